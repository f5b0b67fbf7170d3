package telemetry

import (
	"context"
	"errors"
	"io"
	"net/http"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// TraceDriver returns d making a span ("storage.<Method>", with the driver's name and the
// path) for each call made within a span: content store reads and writes show under the
// request (or the background write) that made them. Calls made outside any span — the
// periodic sweeps walking the whole store — make none. tp nil returns d itself.
func TraceDriver(d storagedriver.StorageDriver, tp trace.TracerProvider) storagedriver.StorageDriver {
	if tp == nil {
		return d
	}
	return &tracedDriver{StorageDriver: d, tracer: tp.Tracer("github.com/portcullis/portcullis/proxy/store")}
}

type tracedDriver struct {
	storagedriver.StorageDriver
	tracer trace.Tracer
}

var _ storagedriver.StorageDriver = (*tracedDriver)(nil)

// start starts the span of op on path when ctx is within one; end ends it with err.
func (t *tracedDriver) start(ctx context.Context, op, path string) (context.Context, func(error)) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, func(error) {}
	}
	ctx, span := t.tracer.Start(ctx, "storage."+op, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("portcullis.storage.driver", t.Name()), attribute.String("portcullis.storage.path", path)))
	return ctx, func(err error) {
		var nf storagedriver.PathNotFoundError
		switch {
		case errors.As(err, &nf):
			span.SetAttributes(attribute.Bool("portcullis.storage.found", false)) // a miss, not a failure
		case err != nil:
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

func (t *tracedDriver) GetContent(ctx context.Context, path string) ([]byte, error) {
	ctx, end := t.start(ctx, "GetContent", path)
	b, err := t.StorageDriver.GetContent(ctx, path)
	end(err)
	return b, err
}

func (t *tracedDriver) PutContent(ctx context.Context, path string, content []byte) error {
	ctx, end := t.start(ctx, "PutContent", path)
	err := t.StorageDriver.PutContent(ctx, path, content)
	end(err)
	return err
}

// Reader's span covers opening the reader, not reading it (which the request's span
// covers).
func (t *tracedDriver) Reader(ctx context.Context, path string, offset int64) (io.ReadCloser, error) {
	ctx, end := t.start(ctx, "Reader", path)
	rc, err := t.StorageDriver.Reader(ctx, path, offset)
	end(err)
	return rc, err
}

// Writer's span covers opening the writer.
func (t *tracedDriver) Writer(ctx context.Context, path string, append bool) (storagedriver.FileWriter, error) {
	ctx, end := t.start(ctx, "Writer", path)
	w, err := t.StorageDriver.Writer(ctx, path, append)
	end(err)
	return w, err
}

func (t *tracedDriver) Stat(ctx context.Context, path string) (storagedriver.FileInfo, error) {
	ctx, end := t.start(ctx, "Stat", path)
	fi, err := t.StorageDriver.Stat(ctx, path)
	end(err)
	return fi, err
}

func (t *tracedDriver) List(ctx context.Context, path string) ([]string, error) {
	ctx, end := t.start(ctx, "List", path)
	l, err := t.StorageDriver.List(ctx, path)
	end(err)
	return l, err
}

func (t *tracedDriver) Move(ctx context.Context, sourcePath, destPath string) error {
	ctx, end := t.start(ctx, "Move", destPath)
	err := t.StorageDriver.Move(ctx, sourcePath, destPath)
	end(err)
	return err
}

func (t *tracedDriver) Delete(ctx context.Context, path string) error {
	ctx, end := t.start(ctx, "Delete", path)
	err := t.StorageDriver.Delete(ctx, path)
	end(err)
	return err
}

func (t *tracedDriver) RedirectURL(r *http.Request, path string) (string, error) {
	return t.StorageDriver.RedirectURL(r, path)
}

func (t *tracedDriver) Walk(ctx context.Context, path string, f storagedriver.WalkFn, options ...func(*storagedriver.WalkOptions)) error {
	ctx, end := t.start(ctx, "Walk", path)
	err := t.StorageDriver.Walk(ctx, path, f, options...)
	end(err)
	return err
}
