package headless

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
)

// klogSink takes client-go's messages for one plugin instance. It reaches
// the informers through their context (klog.FromContext), never as the
// process-wide klog logger, which the kubernetes plugin sets for itself.
// A reflector retrying a failed watch says so only as information (it
// never reaches the watch error handler); those go to the instance's
// outage handling, so they are counted and logged once a minute. Other
// errors are warnings, and the rest shows only with the debug plugin.
type klogSink struct{ health *apiServerHealth }

// withKlogSink returns ctx carrying the sink of the instance whose API
// server health is health.
func withKlogSink(ctx context.Context, health *apiServerHealth) context.Context {
	return klog.NewContext(ctx, logr.New(klogSink{health: health}))
}

func (klogSink) Init(logr.RuntimeInfo)  {}
func (klogSink) Enabled(level int) bool { return level <= 4 }
func (s klogSink) Info(level int, msg string, kv ...any) {
	// "Watch closed" (level 4) is a watch that expired: the reflector
	// lists again, and trouble notes it for the debug log.
	if msg == "watch-list failed - backing off" || msg == "Watch closed" || strings.HasPrefix(msg, "Warning: watch ended with error") {
		s.health.trouble(resourceOf(kv), value(kv, "err"))
		return
	}
	if level == 0 {
		log.Debugf("client-go: %s%s", msg, keyValues(kv))
	}
}
func (klogSink) Error(err error, msg string, kv ...any) {
	log.Warningf("client-go: %s: %v%s", msg, err, keyValues(kv))
}
func (s klogSink) WithValues(...any) logr.LogSink { return s }
func (s klogSink) WithName(string) logr.LogSink   { return s }

// resourceOf names the resource of a reflector's message ("*v1.Service").
func resourceOf(kv []any) string {
	switch t := fmt.Sprint(value(kv, "type")); t {
	case "*v1.Service":
		return "services"
	case "*v1.EndpointSlice":
		return "endpointslices"
	default:
		return t
	}
}

func value(kv []any, key string) any {
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] == key {
			return kv[i+1]
		}
	}
	return nil
}

func keyValues(kv []any) string {
	var sb strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&sb, " %v=%v", kv[i], kv[i+1])
	}
	return sb.String()
}

// apiWarnings logs the warnings the API server sends with its answers
// (deprecations and the like) as this plugin's, once each: client-go's
// default would print them through the process-wide klog.
type apiWarnings struct{ seen sync.Map }

func (w *apiWarnings) HandleWarningHeaderWithContext(_ context.Context, code int, _ string, text string) {
	if code != 299 || text == "" {
		return
	}
	if _, dup := w.seen.LoadOrStore(text, true); !dup {
		log.Warningf("API server: %s", text)
	}
}
