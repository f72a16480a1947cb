package s3_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"go/build"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/pfs-project/pfs/chunkstore/backend"
	"github.com/pfs-project/pfs/chunkstore/backend/backendtest"
	"github.com/pfs-project/pfs/chunkstore/backend/s3"
)

// The tests run against the S3 server at PFS_S3_ENDPOINT (host:port, with
// PFS_S3_ACCESS_KEY and PFS_S3_SECRET_KEY; see scripts/s3-server.sh), or
// else against a versitygw they start. Without either they fail: this
// backend must not go untested silently.

const (
	testAccess = "pfstest"
	testSecret = "pfstestsecret"
)

// server is an S3 endpoint with root credentials.
type server struct {
	endpoint, access, secret string
	stop                     func() // nil for an external server
}

var (
	sharedOnce sync.Once
	shared     server
	sharedErr  error
)

// sharedServer returns the server from the environment, or one versitygw
// started for the whole test binary.
func sharedServer(t *testing.T) server {
	t.Helper()
	if ep := os.Getenv("PFS_S3_ENDPOINT"); ep != "" {
		return server{endpoint: ep, access: os.Getenv("PFS_S3_ACCESS_KEY"), secret: os.Getenv("PFS_S3_SECRET_KEY")}
	}
	sharedOnce.Do(func() { shared, sharedErr = startVersityGW() })
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.stop != nil {
		shared.stop()
	}
	os.Exit(code)
}

// versityGW finds the versitygw binary: $PFS_VERSITYGW, $PATH, $GOBIN,
// $GOPATH/bin.
func versityGW() (string, error) {
	if p := os.Getenv("PFS_VERSITYGW"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	var candidates []string
	if gobin := os.Getenv("GOBIN"); gobin != "" {
		candidates = append(candidates, filepath.Join(gobin, "versitygw"))
	}
	for _, gopath := range filepath.SplitList(build.Default.GOPATH) {
		candidates = append(candidates, filepath.Join(gopath, "bin", "versitygw"))
	}
	for _, p := range candidates {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("versitygw not found; install it with scripts/s3-server.sh or " +
		"go install github.com/versity/versitygw/cmd/versitygw@v1.8.0, or set PFS_S3_ENDPOINT")
}

// startVersityGW starts versitygw on a free loopback port with a fresh
// posix directory and waits until it answers HTTP.
func startVersityGW() (server, error) {
	bin, err := versityGW()
	if err != nil {
		return server{}, err
	}
	dir, err := os.MkdirTemp("", "pfs-versitygw-")
	if err != nil {
		return server{}, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return server{}, err
	}
	endpoint := ln.Addr().String()
	ln.Close() // a small race with other programs picking the port; readiness below catches it

	var out bytes.Buffer
	cmd := exec.Command(bin, "--access", testAccess, "--secret", testSecret,
		"--port", endpoint, "--quiet", "posix", dir)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return server{}, fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() {
		_ = cmd.Process.Kill() // the pid we started, nothing else
		<-exited
		os.RemoveAll(dir)
	}

	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := hc.Get("http://" + endpoint + "/")
		if err == nil {
			resp.Body.Close()
			return server{endpoint: endpoint, access: testAccess, secret: testSecret, stop: stop}, nil
		}
		select {
		case <-exited:
			os.RemoveAll(dir)
			return server{}, fmt.Errorf("versitygw exited: %s", out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return server{}, fmt.Errorf("versitygw on %s not ready after 30s: %v", endpoint, err)
		}
	}
}

// rawClient is a plain minio client on srv, for what the backend does not
// do: making buckets and changing objects behind its back.
func rawClient(t *testing.T, srv server) *minio.Client {
	t.Helper()
	c, err := minio.New(srv.endpoint, &minio.Options{
		Creds:      credentials.NewStaticV4(srv.access, srv.secret, ""),
		Region:     "us-east-1",
		MaxRetries: 1, // a local server; and cleanups must not wait on a stopped one
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newBucket makes a fresh bucket on srv, removed with its objects when the
// test ends.
func newBucket(t *testing.T, srv server) string {
	t.Helper()
	ctx := context.Background()
	c := rawClient(t, srv)
	bucket := fmt.Sprintf("pfs-test-%d-%s", time.Now().Unix(), backendtest.NewKey()[:8])
	if err := c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{Region: "us-east-1"}); err != nil {
		t.Fatalf("MakeBucket %s on %s: %v", bucket, srv.endpoint, err)
	}
	t.Cleanup(func() {
		for obj := range c.ListObjectsIter(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
			if obj.Err == nil {
				_ = c.RemoveObject(ctx, bucket, obj.Key, minio.RemoveObjectOptions{})
			}
		}
		if err := c.RemoveBucket(ctx, bucket); err != nil {
			t.Logf("RemoveBucket %s: %v", bucket, err)
		}
	})
	return bucket
}

func config(srv server, bucket, prefix string) s3.Config {
	return s3.Config{
		Endpoint:  srv.endpoint,
		Bucket:    bucket,
		Prefix:    prefix,
		Region:    "us-east-1",
		AccessKey: srv.access,
		SecretKey: srv.secret,
		PathStyle: true,
	}
}

func newS3(t *testing.T, cfg s3.Config) *s3.S3 {
	t.Helper()
	be, err := s3.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return be
}

func TestBackend(t *testing.T) {
	srv := sharedServer(t)
	bucket := newBucket(t, srv)
	n := 0
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		n++ // each subtest gets an empty prefix of its own
		return newS3(t, config(srv, bucket, fmt.Sprintf("pfs/run%d/", n)))
	})
}

// TestNoPrefix checks a backend owning a whole bucket, and that a prefix
// hides objects outside it.
func TestNoPrefix(t *testing.T) {
	ctx := context.Background()
	srv := sharedServer(t)
	bucket := newBucket(t, srv)
	whole := newS3(t, config(srv, bucket, ""))
	sub := newS3(t, config(srv, bucket, "/sub/"))
	key := backendtest.NewKey()
	if err := whole.Save(ctx, key, []byte("top")); err != nil {
		t.Fatal(err)
	}
	if err := sub.Save(ctx, key, []byte("sub")); err != nil {
		t.Fatal(err)
	}
	if got, err := whole.Load(ctx, key, 0, -1); err != nil || string(got) != "top" {
		t.Errorf("whole bucket: Load = %q, %v", got, err)
	}
	if got, err := sub.Load(ctx, key, 0, -1); err != nil || string(got) != "sub" {
		t.Errorf("prefix: Load = %q, %v", got, err)
	}
	var listed []string
	if err := whole.List(ctx, func(k string, _ int64) error { listed = append(listed, k); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0] != key {
		t.Errorf("List of the whole bucket = %q, want [%s] (sub/ is not ours)", listed, key)
	}
	if err := whole.Save(ctx, "a/b", []byte("x")); !errors.Is(err, backend.ErrInvalidKey) {
		t.Errorf("Save(a/b) = %v, want ErrInvalidKey", err)
	}
}

// TestChangedBehindBack: Load returns the bytes stored now, not something
// cached; catching the change is the chunkstore's MD5 check's job.
func TestChangedBehindBack(t *testing.T) {
	ctx := context.Background()
	srv := sharedServer(t)
	bucket := newBucket(t, srv)
	be := newS3(t, config(srv, bucket, "pfs"))
	key := backendtest.NewKey()
	orig := bytes.Repeat([]byte("a"), 1000)
	if err := be.Save(ctx, key, orig); err != nil {
		t.Fatal(err)
	}
	if got, err := be.Load(ctx, key, 0, -1); err != nil || !bytes.Equal(got, orig) {
		t.Fatalf("Load = %d bytes, %v", len(got), err)
	}
	changed := bytes.Clone(orig)
	changed[500] = 'X'
	if _, err := rawClient(t, srv).PutObject(ctx, bucket, "pfs/"+key, bytes.NewReader(changed), int64(len(changed)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, err := be.Load(ctx, key, 0, -1); err != nil || !bytes.Equal(got, changed) {
		t.Errorf("Load after change: %v, changed bytes returned: %v", err, bytes.Equal(got, changed))
	}
	if got, err := be.Load(ctx, key, 495, 10); err != nil || string(got) != "aaaaaXaaaa" {
		t.Errorf("ranged Load after change = %q, %v", got, err)
	}
}

// TestStoppedServer: once the server is gone every call fails, after the
// configured retries, instead of hanging.
func TestStoppedServer(t *testing.T) {
	srv, err := startVersityGW()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.stop)
	ctx := context.Background()
	bucket := newBucket(t, srv)
	cfg := config(srv, bucket, "pfs")
	cfg.MaxRetries = 2
	be := newS3(t, cfg)
	key := backendtest.NewKey()
	if err := be.Save(ctx, key, []byte("before")); err != nil {
		t.Fatal(err)
	}
	srv.stop()
	srv.stop = func() {}

	for name, call := range map[string]func() error{
		"Save":   func() error { return be.Save(ctx, key, []byte("after")) },
		"Load":   func() error { _, err := be.Load(ctx, key, 0, -1); return err },
		"Stat":   func() error { _, err := be.Stat(ctx, key); return err },
		"Delete": func() error { return be.Delete(ctx, key) },
		"List":   func() error { return be.List(ctx, func(string, int64) error { return nil }) },
	} {
		start := time.Now()
		err := call()
		elapsed := time.Since(start)
		t.Logf("%s: %v after %v", name, err, elapsed.Round(time.Millisecond))
		if err == nil {
			t.Errorf("%s on a stopped server succeeded", name)
		}
		if errors.Is(err, backend.ErrNotFound) {
			t.Errorf("%s on a stopped server = %v, must not look like a missing object", name, err)
		}
		if elapsed > 10*time.Second {
			t.Errorf("%s took %v to fail", name, elapsed)
		}
	}
}

// TestUnresponsiveServer: a server that accepts connections and never
// answers costs Timeout per attempt, not forever.
func TestUnresponsiveServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // never Accepts: the kernel completes the handshakes
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := config(server{endpoint: ln.Addr().String(), access: "a", secret: "b"}, "bucket", "")
	cfg.Timeout = 300 * time.Millisecond
	cfg.MaxRetries = 2
	start := time.Now()
	be, err := s3.New(context.Background(), cfg)
	elapsed := time.Since(start)
	t.Logf("New: %v after %v", err, elapsed.Round(time.Millisecond))
	if err == nil {
		be.Close()
		t.Fatal("New against a silent server succeeded")
	}
	if elapsed > 10*time.Second {
		t.Errorf("New took %v to fail", elapsed)
	}
}

func TestParseURL(t *testing.T) {
	for _, c := range []struct {
		url, bucket, prefix string
	}{
		{"s3://bucket", "bucket", ""},
		{"s3://bucket/", "bucket", ""},
		{"s3://my-bucket/some/prefix/", "my-bucket", "some/prefix"},
	} {
		cfg, err := s3.ParseURL(c.url)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", c.url, err)
			continue
		}
		if cfg.Bucket != c.bucket || cfg.Prefix != c.prefix || cfg.Endpoint != s3.DefaultEndpoint || !cfg.UseSSL {
			t.Errorf("ParseURL(%q) = %+v", c.url, cfg)
		}
	}
	for _, u := range []string{"", "bucket/prefix", "http://bucket/x", "s3:///prefix", "s3://b/p?x=1", "s3://a/p"} {
		if cfg, err := s3.ParseURL(u); err == nil {
			t.Errorf("ParseURL(%q) = %+v, want error", u, cfg)
		}
	}
}

func TestValidate(t *testing.T) {
	good := s3.DefaultConfig()
	good.Bucket = "bucket"
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate(%+v): %v", good, err)
	}
	for name, mod := range map[string]func(*s3.Config){
		"no endpoint":  func(c *s3.Config) { c.Endpoint = "" },
		"scheme":       func(c *s3.Config) { c.Endpoint = "https://s3.example.com" },
		"no bucket":    func(c *s3.Config) { c.Bucket = "" },
		"retries":      func(c *s3.Config) { c.MaxRetries = -2 },
		"timeout":      func(c *s3.Config) { c.Timeout = -time.Second },
		"secret only":  func(c *s3.Config) { c.SecretKey = "s" },
		"session only": func(c *s3.Config) { c.SessionToken = "t" },
		"short bucket": func(c *s3.Config) { c.Bucket = "ab" },
	} {
		c := good
		mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate(%+v) = nil, want error", name, c)
		}
	}
}
