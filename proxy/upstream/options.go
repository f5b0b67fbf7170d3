package upstream

import "net/http"

// Option configures a Client beyond its Config: what the process, not the configuration
// file, decides.
type Option func(*options)

type options struct {
	wrap func(http.RoundTripper) http.RoundTripper
}

// WithTransportWrapper has each attempt of each request to the upstream go through
// wrap(transport), below the retries: metrics and trace spans see every attempt, and the
// request they send carries what the wrapper adds (a traceparent header). Default: none.
func WithTransportWrapper(wrap func(http.RoundTripper) http.RoundTripper) Option {
	return func(o *options) { o.wrap = wrap }
}

func applyOptions(opts []Option) options {
	o := options{wrap: func(rt http.RoundTripper) http.RoundTripper { return rt }}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if o.wrap == nil {
		o.wrap = func(rt http.RoundTripper) http.RoundTripper { return rt }
	}
	return o
}
