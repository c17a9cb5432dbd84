package benchkit

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Env reads a suite's settings from environment variables, keeping every
// mistake so that one run reports them all.
type Env struct{ errs []error }

// Fail records a mistake of the settings.
func (e *Env) Fail(err error) { e.errs = append(e.errs, err) }

// Int sets *v from the variable name, when set: an integer of at least least.
func (e *Env) Int(name string, v *int, least int) {
	if s := os.Getenv(name); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < least {
			e.Fail(fmt.Errorf("%s=%q: want an integer of at least %d", name, s, least))
			return
		}
		*v = n
	}
}

// Seconds sets *v from the variable name, when set: whole seconds, at least one.
func (e *Env) Seconds(name string, v *time.Duration) {
	n := int(*v / time.Second)
	e.Int(name, &n, 1)
	*v = time.Duration(n) * time.Second
}

// Seed sets *v from the variable name, when set.
func (e *Env) Seed(name string, v *uint64) {
	n := int(*v)
	e.Int(name, &n, 0)
	*v = uint64(n)
}

// Err is every mistake recorded, or nil.
func (e *Env) Err() error { return errors.Join(e.errs...) }
