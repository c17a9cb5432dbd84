package headless

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilnet "k8s.io/apimachinery/pkg/util/net"
)

// Retries of a list or watch that could not reach the API server start at
// retryMin and double up to retryMax. The informers' reflectors would
// otherwise back off on their own, each up to 30 s with jitter, and leave
// the index stale that long after the API server came back; retrying here,
// inside the list or watch call, keeps their backoff from ever growing.
const (
	retryMin = 50 * time.Millisecond
	retryMax = 400 * time.Millisecond
)

// apiServerHealth is what one plugin instance knows of its API server:
// whether it is away, since when, and when each resource's trouble was last
// logged. Each instance has its own, so two server blocks, or the old and
// new instance during a reload, report their own connection.
type apiServerHealth struct {
	down atomic.Bool

	mu          sync.Mutex
	since       time.Time            // when the outage began
	lastTrouble map[string]time.Time // by resource
}

func newAPIServerHealth() *apiServerHealth {
	return &apiServerHealth{lastTrouble: map[string]time.Time{}}
}

// untilReachable makes a list or watch call, and while it fails because the
// API server cannot be reached (refused, reset, overloaded, shutting down)
// makes it again, until it succeeds, fails for another reason (forbidden,
// expired resource version...), or ctx ends.
func untilReachable[T any](ctx context.Context, health *apiServerHealth, resource string, call func() (T, error)) (T, error) {
	delay := retryMin
	for {
		v, err := call()
		if err == nil || !unreachable(err) || ctx.Err() != nil {
			if err == nil || isAPIStatus(err) {
				health.reached()
			}
			return v, err
		}
		health.lost(resource, err)
		// Jitter between delay/2 and delay: several informers, and
		// several CoreDNS replicas, do not knock in step.
		t := time.NewTimer(delay/2 + rand.N(delay/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return v, ctx.Err()
		case <-t.C:
		}
		delay = min(2*delay, retryMax)
	}
}

// unreachable tells errors that say the API server is away or cannot serve
// now from those it answered with a decision.
func unreachable(err error) bool {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		switch status.Status().Code {
		case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	var transport *url.Error // dial, TLS and connection errors of the HTTP client
	return errors.As(err, &transport) || utilnet.IsProbableEOF(err) || utilnet.IsConnectionRefused(err)
}

func isAPIStatus(err error) bool {
	var status apierrors.APIStatus
	return errors.As(err, &status)
}

// lost notes that the API server could not be reached. The outage is
// logged when it starts, however many informers retry how many times.
func (a *apiServerHealth) lost(resource string, err any) {
	watchErrors.WithLabelValues(resource).Inc()
	if a.down.Load() {
		return
	}
	a.mu.Lock()
	first := !a.down.Swap(true)
	if first {
		a.since = time.Now()
	}
	a.mu.Unlock()
	if first {
		log.Warningf("API server unreachable (%v): answering from the last known state, retrying every %s", err, retryMax)
	}
}

// reached notes an answer from the API server, and logs the end of an
// outage once.
func (a *apiServerHealth) reached() {
	if !a.down.Load() {
		return
	}
	a.mu.Lock()
	was := a.down.Swap(false)
	away := time.Since(a.since)
	a.mu.Unlock()
	if was {
		log.Infof("API server reachable again after %s; catching up on what changed", away.Round(time.Millisecond))
	}
}

// trouble counts a list or watch that the API server refused, or that
// failed in a way untilReachable does not retry, and logs it, at most once
// a minute per resource; the reflector retries with its own backoff.
func (a *apiServerHealth) trouble(resource string, err any) {
	if e, ok := err.(error); ok {
		switch {
		case unreachable(e) || strings.Contains(e.Error(), "very short watch"):
			// A watch stream that ends at once, with nothing in it, is
			// the first sign of a lost connection.
			a.lost(resource, e)
			return
		case apierrors.IsResourceExpired(e) || apierrors.IsGone(e):
			// The watch fell out of the server's history: the reflector
			// lists again, and the index follows the new list.
			log.Debugf("watching %s: %v; listing again", resource, e)
			return
		}
	}
	watchErrors.WithLabelValues(resource).Inc()
	a.mu.Lock()
	quiet := time.Since(a.lastTrouble[resource]) < time.Minute
	if !quiet {
		a.lastTrouble[resource] = time.Now()
	}
	a.mu.Unlock()
	if quiet {
		return
	}
	if e, ok := err.(error); ok && apierrors.IsForbidden(e) {
		log.Errorf("missing permission: %v (the plugin needs list and watch on services, on endpointslices in API group discovery.k8s.io, and with multicluster on serviceimports in multicluster.x-k8s.io; see the README's Permissions)", e)
		return
	}
	if e, ok := err.(error); ok && apierrors.IsNotFound(e) && resource == "serviceimports" {
		log.Errorf("multicluster: the API server serves no ServiceImports (multicluster.x-k8s.io/v1alpha1): install the Multi-Cluster Services API's CRDs, or remove the multicluster option (%v)", e)
		return
	}
	log.Warningf("watching %s: %v (answering from the last known state while retrying)", resource, err)
}
