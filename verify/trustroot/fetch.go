package trustroot

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// DefaultFetchTimeout bounds each download from a TUF repository.
const DefaultFetchTimeout = 30 * time.Second

// fetcher downloads TUF metadata and targets with a bounded, cancellable request, where
// go-tuf's default fetcher uses http.DefaultClient, which never gives up on a mirror that
// stops answering.
type fetcher struct {
	ctx    context.Context
	client *http.Client
}

// DownloadFile implements go-tuf's fetcher.Fetcher: at most maxLength bytes, HTTP errors as
// *metadata.ErrDownloadHTTP (the updater reads a 404 as "no newer root").
func (f fetcher) DownloadFile(url string, maxLength int64, _ time.Duration) ([]byte, error) {
	req, err := http.NewRequestWithContext(f.ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	res, err := f.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, &metadata.ErrDownloadHTTP{StatusCode: res.StatusCode, URL: url}
	}
	if n, err := strconv.ParseInt(res.Header.Get("Content-Length"), 10, 64); err == nil && n > maxLength {
		return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("download failed for %s, length %d is larger than expected %d", url, n, maxLength)}
	}
	b, err := io.ReadAll(io.LimitReader(res.Body, maxLength+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > maxLength {
		return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("download failed for %s, more than %d bytes", url, maxLength)}
	}
	return b, nil
}
