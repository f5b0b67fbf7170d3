package proxy

import (
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// BenchmarkSendStoredBlob serves a page-cached 64 MiB file over loopback to a client, in
// one run both ways a stored blob could be sent: io.CopyN (net/http picks sendfile for a
// file) and copyN (write(2)s from a buffer). It reports each one's MiB/s and their ratio.
func BenchmarkSendStoredBlob(b *testing.B) {
	const size = 64 << 20
	p := filepath.Join(b.TempDir(), "blob")
	blob := make([]byte, size)
	_, _ = rand.Read(blob)
	if err := os.WriteFile(p, blob, 0o600); err != nil {
		b.Fatal(err)
	}
	send := map[string]func(w io.Writer, f *os.File) error{
		"sendfile": func(w io.Writer, f *os.File) error { _, err := io.CopyN(w, f, size); return err },
		"write":    func(w io.Writer, f *os.File) error { _, err := copyN(w, f, size, make([]byte, copyBuffer)); return err },
	}
	mode := ""
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(p)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer f.Close()
		w.Header().Set("Content-Length", strconv.Itoa(size))
		_ = send[mode](w, f)
	}))
	defer srv.Close()
	get := func() time.Duration {
		t0 := time.Now()
		resp, err := http.Get(srv.URL)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != size {
			b.Fatalf("got %d bytes, %v", n, err)
		}
		return time.Since(t0)
	}
	var total = map[string]time.Duration{}
	for b.Loop() {
		for _, m := range []string{"sendfile", "write"} { // alternating, so both see the same load
			mode = m
			total[m] += get()
		}
	}
	rate := func(m string) float64 { return float64(b.N) * size / (1 << 20) / total[m].Seconds() }
	b.ReportMetric(rate("sendfile"), "sendfile-MiB/s")
	b.ReportMetric(rate("write"), "write-MiB/s")
	b.ReportMetric(rate("write")/rate("sendfile"), "write/sendfile")
}

// TestCopyN: copyN copies exactly n bytes, says io.EOF when the source is shorter, and
// writes no more than its buffer at a time (never through the writer's ReadFrom).
func TestCopyN(t *testing.T) {
	for _, tc := range []struct {
		src, n, buf int64
		wantN       int64
		wantErr     error
	}{
		{src: 100, n: 100, buf: 16, wantN: 100},
		{src: 100, n: 40, buf: 16, wantN: 40},
		{src: 30, n: 40, buf: 16, wantN: 30, wantErr: io.EOF},
		{src: 0, n: 0, buf: 0, wantN: 0},
	} {
		w := &sizes{}
		n, err := copyN(w, io.LimitReader(zeros{}, tc.src), tc.n, make([]byte, tc.buf))
		if n != tc.wantN || err != tc.wantErr {
			t.Errorf("%+v: copyN = %d, %v", tc, n, err)
		}
		if w.total != tc.wantN || w.max > tc.buf || w.readFrom {
			t.Errorf("%+v: wrote %d bytes, largest write %d, ReadFrom used %v", tc, w.total, w.max, w.readFrom)
		}
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// sizes records the writes it gets; its ReadFrom must not be used.
type sizes struct {
	total, max int64
	readFrom   bool
}

func (s *sizes) Write(p []byte) (int, error) {
	s.total += int64(len(p))
	s.max = max(s.max, int64(len(p)))
	return len(p), nil
}

func (s *sizes) ReadFrom(r io.Reader) (int64, error) {
	s.readFrom = true
	return io.Copy(io.Discard, r)
}
