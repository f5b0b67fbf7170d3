package testtool

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/s3"
)

// MinIO is a real S3 server (bin/minio, built by hack/tools.sh) serving on 127.0.0.1 from a
// temporary directory, for the tests of the s3 storage driver.
type MinIO struct {
	// Endpoint is the server's URL, http://127.0.0.1:<port>.
	Endpoint string
	// AccessKey and SecretKey are the root credentials.
	AccessKey, SecretKey string
	// Region is the region the server answers for.
	Region string
	// Bucket is a bucket created at start.
	Bucket string

	cmd     *exec.Cmd
	buckets atomic.Int64
}

// StartMinIO starts MinIO on a free port of 127.0.0.1 and creates m.Bucket. It is stopped
// when the test ends. Without the binary the test is skipped (fails when CI=true).
func StartMinIO(t testing.TB) *MinIO {
	t.Helper()
	bin := Path(t, "minio")
	m := &MinIO{AccessKey: "portcullis-test", SecretKey: "portcullis-test-secret", Region: "us-east-1"}
	port := FreePort(t)
	m.Endpoint = "http://127.0.0.1:" + strconv.Itoa(port)
	log, err := os.Create(filepath.Join(t.TempDir(), "minio.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	m.cmd = exec.Command(bin, "server", "--quiet", "--address", "127.0.0.1:"+strconv.Itoa(port), filepath.Join(t.TempDir(), "data"))
	m.cmd.Env = OfflineEnv(t, "MINIO_ROOT_USER="+m.AccessKey, "MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off")
	m.cmd.Stdout, m.cmd.Stderr = log, log
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("start minio: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- m.cmd.Wait() }()
	t.Cleanup(func() {
		_ = m.cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(m.Endpoint + "/minio/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-exited:
			out, _ := os.ReadFile(log.Name())
			t.Fatalf("minio exited: %v\n%s", err, out)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(log.Name())
			t.Fatalf("minio not ready after 60s\n%s", out)
		}
	}
	m.Bucket = m.NewBucket(t)
	return m
}

// NewBucket creates an empty bucket and returns its name.
func (m *MinIO) NewBucket(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("portcullis-%d", m.buckets.Add(1))
	sess, err := session.NewSession(aws.NewConfig().
		WithEndpoint(m.Endpoint).WithRegion(m.Region).WithS3ForcePathStyle(true).
		WithCredentials(credentials.NewStaticCredentials(m.AccessKey, m.SecretKey, "")))
	if err != nil {
		t.Fatal(err)
	}
	// Ready for health checks is not always ready for requests yet (nor, on a loaded
	// machine, quick): each attempt is bounded, and retried for a minute.
	client := s3.New(sess)
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := client.CreateBucketWithContext(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)})
		cancel()
		if err == nil {
			return name
		}
		if time.Now().After(deadline) {
			t.Fatalf("create bucket %s: %v", name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Params returns the storage.params of portcullis's s3 driver (distribution's s3 parameters)
// for bucket.
func (m *MinIO) Params(bucket string) map[string]any {
	return map[string]any{
		"regionendpoint": m.Endpoint, "region": m.Region, "bucket": bucket,
		"accesskey": m.AccessKey, "secretkey": m.SecretKey,
		"secure": false, "forcepathstyle": true, "rootdirectory": "/portcullis",
	}
}

// YAML returns Params(bucket) as the storage section of a portcullis configuration, with the
// secret key in secretkeyfile.
func (m *MinIO) YAML(bucket, secretkeyfile string) string {
	var b strings.Builder
	b.WriteString("storage:\n  driver: s3\n  params:\n")
	for _, k := range []string{"regionendpoint", "region", "bucket", "accesskey", "secure", "forcepathstyle", "rootdirectory"} {
		fmt.Fprintf(&b, "    %s: %v\n", k, m.Params(bucket)[k])
	}
	fmt.Fprintf(&b, "    secretkeyFile: %s\n", secretkeyfile)
	return b.String()
}

// FreePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
