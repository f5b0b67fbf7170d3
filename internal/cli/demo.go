package cli

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/internal/app"
	"github.com/portcullis/portcullis/internal/sign"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy/upstream"
)

// demoUpstream is the name clients use for the demo's upstream registry.
const demoUpstream = "demo.invalid"

// Demo runs portcullis offline against an in-process registry on loopback: it pushes a
// signed and an unsigned image, serves a proxy on listen with a policy for the signing key,
// pulls both through it and reports on out. It fails unless the signed image is admitted and
// the unsigned one denied. With keep it serves until ctx ends.
func Demo(ctx context.Context, out io.Writer, listen string, keep bool) error {
	say := func(format string, a ...any) { fmt.Fprintf(out, format+"\n", a...) }

	// 1. An upstream registry, in process, on loopback.
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	upSrv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = upSrv.Serve(upLn) }()
	defer upSrv.Close()
	upHost := upLn.Addr().String()
	say("upstream   in-process registry at http://%s, known to clients as %s", upHost, demoUpstream)

	// 2. Two images, one of them signed with a fresh key, as `cosign sign` (v3) would.
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	signer, err := signature.LoadECDSASignerVerifier(priv, crypto.SHA256)
	if err != nil {
		return err
	}
	pubPEM, err := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	if err != nil {
		return err
	}
	images := map[string]v1.Hash{}
	for _, repo := range []string{"demo/signed", "demo/unsigned"} {
		img, err := random.Image(1024, 1)
		if err != nil {
			return err
		}
		ref, err := name.ParseReference(upHost+"/"+repo+":v1", name.Insecure)
		if err != nil {
			return err
		}
		if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
			return fmt.Errorf("push %s: %w", repo, err)
		}
		d, _ := img.Digest()
		images[repo] = d
		say("pushed     %s:v1 %s", repo, d)
		if repo == "demo/signed" {
			mt, _ := img.MediaType()
			size, _ := img.Size()
			if _, err := sign.Bundle(ctx, ref.Context(), v1.Descriptor{MediaType: mt, Digest: d, Size: size}, signer, priv.Public(), nil, remote.WithContext(ctx)); err != nil {
				return fmt.Errorf("sign %s: %w", repo, err)
			}
			say("signed     %s:v1 with a new ECDSA P-256 key (sigstore bundle, OCI referrer)", repo)
		}
	}

	// 3. portcullis in front of it, enforcing a policy for that key.
	// The defaults of every key, as serve reads them, with the demo's own settings on top.
	cfg, err := config.Defaults()
	if err != nil {
		return err
	}
	cfg.Listen = listen
	cfg.Log = config.Log{Format: "text", Level: "warn"}
	cfg.Storage.Driver = "inmemory"
	cfg.Upstreams = []upstream.Config{{
		Name: demoUpstream, URL: "http://" + upHost, Insecure: true, Default: true,
	}}
	cfg.Policies = []policy.PolicyConfig{{
		Name: "demo", Images: []string{demoUpstream + "/demo/**"}, Mode: policy.ModeEnforce,
		Authorities: []policy.AuthorityConfig{{Name: "demo-key", Key: policy.KeyConfig{Data: string(pubPEM)}}},
	}}
	cfg.DefaultPolicy = policy.DefaultDeny
	if err := cfg.Validate(); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if keep {
		logger = slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	a, err := app.New(ctx, cfg, app.Options{Logger: logger})
	if err != nil {
		return err
	}
	defer func() { _ = a.Close(context.WithoutCancel(ctx)) }() // after srv.Close, before the store goes
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: a.Handler, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	px := ln.Addr().String()
	say("proxy      portcullis at http://%s, policy \"demo\" requires a signature by \"demo-key\" for %s/demo/**", px, demoUpstream)
	say("")

	// 4. Pull both through the proxy, as a client configured with it as its mirror would.
	ok := true
	for _, repo := range []string{"demo/signed", "demo/unsigned"} {
		ref, err := name.ParseReference(px+"/"+repo+":v1", name.Insecure)
		if err != nil {
			return err
		}
		img, err := remote.Image(ref, remote.WithContext(ctx))
		var pulled int64
		if err == nil {
			pulled, err = pullAll(img)
		}
		switch {
		case err == nil:
			say("ADMITTED   %s/%s:v1 (%s): pulled %d bytes through portcullis", demoUpstream, repo, images[repo], pulled)
			ok = ok && repo == "demo/signed"
		default:
			msg := err.Error()
			var terr *transport.Error
			if errors.As(err, &terr) && len(terr.Errors) > 0 {
				msg = fmt.Sprintf("%s %s: %s", http.StatusText(terr.StatusCode), terr.Errors[0].Code, terr.Errors[0].Message)
			}
			say("DENIED     %s/%s:v1: %s", demoUpstream, repo, msg)
			ok = ok && repo == "demo/unsigned"
		}
	}
	if !ok {
		return errors.New("demo: the signed image must be admitted and the unsigned one denied")
	}
	if keep {
		say("")
		say("serving until interrupted; try: crane pull --insecure %s/demo/signed:v1 signed.tar", px)
		<-ctx.Done()
	}
	return nil
}

// pullAll reads every blob of img, returning the bytes read.
func pullAll(img v1.Image) (int64, error) {
	var n int64
	if _, err := img.RawConfigFile(); err != nil {
		return 0, err
	}
	layers, err := img.Layers()
	if err != nil {
		return 0, err
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return n, err
		}
		c, err := io.Copy(io.Discard, rc)
		rc.Close()
		n += c
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
