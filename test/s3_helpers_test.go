package test

// Fixtures of the S3 tests (s3_test.go): a versitygw S3 server on
// loopback that a test starts, stops and restarts on the same port and
// data directory; a bucket per test; the flags and environment that point
// a pfs store at them.
//
// chunkstore/backend/s3/s3_test.go starts versitygw the same way. It is
// repeated here rather than shared because test/ drives the binary and
// imports no pfs package (depguard rule tests-drive-the-binary).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// versitygw is installed with go install when it is not found; the
// version CI pins (scripts/s3-server.sh).
const (
	versityGWPackage = "github.com/versity/versitygw/cmd/versitygw"
	versityGWVersion = "v1.8.0"
)

// Root credentials of the test servers, and the region pfs is told.
const (
	s3Access = "pfsintegaccess"
	s3Secret = "pfs-integ-secret-7c1e"
	s3Region = "us-east-1"
)

// s3ExitError is pfs's exit code for errors that are neither usage,
// lock, not-found nor damage (exitError in cmd/pfs/exitcodes.go).
const s3ExitError = 3

// s3ReadyTimeout bounds the wait for a started server to answer.
const s3ReadyTimeout = 30 * time.Second

var (
	versityGWOnce sync.Once
	versityGWPath string
	versityGWErr  error
)

// versityGWBinary returns the versitygw to run: $PFS_VERSITYGW, else one
// on $PATH, in $GOBIN or in $GOPATH/bin, else one it installs there with
// go install. Not having one fails the test: S3 support must not go
// untested silently.
func versityGWBinary(t *testing.T) string {
	t.Helper()
	versityGWOnce.Do(func() { versityGWPath, versityGWErr = findVersityGW() })
	if versityGWErr != nil {
		t.Fatalf("versitygw, the S3 server of these tests: %v", versityGWErr)
	}
	return versityGWPath
}

func findVersityGW() (string, error) {
	if p := os.Getenv("PFS_VERSITYGW"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output()
	if err != nil {
		return "", fmt.Errorf("not on $PATH, and go env failed: %v", err)
	}
	lines := strings.Split(string(out), "\n")
	gobin := strings.TrimSpace(lines[0])
	var dirs []string
	if gobin != "" {
		dirs = append(dirs, gobin)
	}
	if len(lines) > 1 {
		for _, gopath := range filepath.SplitList(strings.TrimSpace(lines[1])) {
			dirs = append(dirs, filepath.Join(gopath, "bin"))
		}
	}
	if len(dirs) == 0 {
		return "", errors.New("not on $PATH, and go env reports neither GOBIN nor GOPATH")
	}
	for _, d := range dirs {
		if p := filepath.Join(d, "versitygw"); s3IsExecutable(p) {
			return p, nil
		}
	}
	// Install into the first of them, as scripts/s3-server.sh does.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	pkg := versityGWPackage + "@" + versityGWVersion
	cmd := exec.CommandContext(ctx, "go", "install", pkg)
	cmd.Env = append(os.Environ(), "GOBIN="+dirs[0])
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("not found, and go install %s into %s failed: %v\n%s", pkg, dirs[0], err, out)
	}
	p := filepath.Join(dirs[0], "versitygw")
	if !s3IsExecutable(p) {
		return "", fmt.Errorf("go install %s succeeded but %s is not there", pkg, p)
	}
	return p, nil
}

func s3IsExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// s3Server is a versitygw process serving the posix directory dir on
// endpoint (127.0.0.1:port). Both stay the same across stop and start,
// so what was stored before a stop is there after the restart.
type s3Server struct {
	bin      string
	dir      string
	logPath  string
	endpoint string

	cmd    *exec.Cmd     // nil while stopped
	exited chan struct{} // closed when cmd has exited
}

// startS3Server starts a server on a free loopback port with an empty
// data directory. Cleanup stops it.
func startS3Server(t *testing.T) *s3Server {
	t.Helper()
	base := t.TempDir()
	s := &s3Server{bin: versityGWBinary(t), dir: filepath.Join(base, "data"), logPath: filepath.Join(base, "versitygw.log")}
	if err := os.Mkdir(s.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	var err error
	for try := 0; try < 3; try++ { // another program may take the free port first
		ln, lerr := net.Listen("tcp", "127.0.0.1:0")
		if lerr != nil {
			t.Fatal(lerr)
		}
		s.endpoint = ln.Addr().String()
		ln.Close()
		if err = s.start(); err == nil {
			return s
		}
	}
	t.Fatalf("start versitygw: %v", err)
	return nil
}

// start runs versitygw on s.endpoint and waits until it answers HTTP.
func (s *s3Server) start() error {
	if s.cmd != nil {
		return fmt.Errorf("versitygw on %s is already running", s.endpoint)
	}
	logf, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "--- starting on %s\n", s.endpoint)
	cmd := exec.Command(s.bin, "--access", s3Access, "--secret", s3Secret,
		"--port", s.endpoint, "--quiet", "posix", s.dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited

	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(s3ReadyTimeout)
	for {
		resp, err := hc.Get("http://" + s.endpoint + "/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-exited:
			s.cmd = nil
			return fmt.Errorf("versitygw on %s exited before it was ready:\n%s", s.endpoint, s.log())
		case <-time.After(100 * time.Millisecond): // polling the port: the only readiness signal it has
		}
		if time.Now().After(deadline) {
			s.stop()
			return fmt.Errorf("versitygw on %s not ready after %v: %v\n%s", s.endpoint, s3ReadyTimeout, err, s.log())
		}
	}
}

// stop kills the server (the process this fixture started, nothing else),
// as a crash or a power cut would, and waits for it to exit. The data
// directory stays.
func (s *s3Server) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// restart starts a stopped server again on the same port and directory.
func (s *s3Server) restart(t *testing.T) {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
}

// log returns what the server printed.
func (s *s3Server) log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

// client returns a minio client with the root credentials, for what pfs
// does not do: making buckets, and changing objects behind its back.
func (s *s3Server) client(t *testing.T) *minio.Client {
	t.Helper()
	c, err := minio.New(s.endpoint, &minio.Options{
		Creds:      credentials.NewStaticV4(s3Access, s3Secret, ""),
		Secure:     false,
		Region:     s3Region,
		MaxRetries: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var s3BucketSeq int

// newBucket makes an empty bucket for the calling test. It goes with the
// server's data directory.
func (s *s3Server) newBucket(t *testing.T) string {
	t.Helper()
	s3BucketSeq++
	name := fmt.Sprintf("pfs-%s-%d", strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "-")), s3BucketSeq)
	if len(name) > 63 {
		name = fmt.Sprintf("pfs-test-%d-%d", time.Now().UnixNano(), s3BucketSeq)
	}
	name = strings.TrimRight(name, "-")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.client(t).MakeBucket(ctx, name, minio.MakeBucketOptions{Region: s3Region}); err != nil {
		t.Fatalf("MakeBucket %s on %s: %v", name, s.endpoint, err)
	}
	return name
}

// s3Creds gives pfs and everything it starts (the mount daemon inherits
// the environment) the server's credentials, in the standard AWS
// variables and nowhere else. A shared credentials file of the user
// running the tests is hidden.
func s3Creds(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", s3Access)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3Secret)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "no-credentials"))
}

// args returns the pfs flags that put a new store's parts in bucket under
// prefix on s.
func (s *s3Server) args(bucket, prefix string) []string {
	return []string{"--backend", "s3://" + bucket + "/" + prefix, "--s3-endpoint", s.endpoint,
		"--s3-region", s3Region, "--s3-path-style", "--s3-no-ssl"}
}

// objects returns the size of every object in bucket whose name starts
// with prefix, by name.
func (s *s3Server) objects(t *testing.T, bucket, prefix string) map[string]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m := map[string]int64{}
	for obj := range s.client(t).ListObjectsIter(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			t.Fatalf("list bucket %s: %v", bucket, obj.Err)
		}
		m[obj.Key] = obj.Size
	}
	return m
}

// getObject returns an object's bytes.
func (s *s3Server) getObject(t *testing.T, bucket, name string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	obj, err := s.client(t).GetObject(ctx, bucket, name, minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("get %s/%s: %v", bucket, name, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("get %s/%s: %v", bucket, name, err)
	}
	return b
}

// putObject overwrites (or creates) an object.
func (s *s3Server) putObject(t *testing.T, bucket, name string, data []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := s.client(t).PutObject(ctx, bucket, name, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		t.Fatalf("put %s/%s: %v", bucket, name, err)
	}
}

// removeObject deletes an object.
func (s *s3Server) removeObject(t *testing.T, bucket, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.client(t).RemoveObject(ctx, bucket, name, minio.RemoveObjectOptions{}); err != nil {
		t.Fatalf("remove %s/%s: %v", bucket, name, err)
	}
}

// s3Part is one "part" line of pfs ls --long.
type s3Part struct {
	chunk, offset, length, stored int64
	id, status                    string
}

var (
	s3LsFileRE = regexp.MustCompile(`^[0-9a-f-]{36} +(\d+) +\S+ +\S+ +\S+ +(.+)$`)
	s3LsPartRE = regexp.MustCompile(`^  part chunk=(\d+) offset=(\d+) len=(\d+) id=([0-9a-f-]{36}) stored=(\d+) md5=[0-9a-f]{32} compression=\S+ status=(\S+)$`)
)

// s3Parts runs pfs ls --long on store and returns the parts of every
// regular file by path.
func s3Parts(t *testing.T, store string) map[string][]s3Part {
	t.Helper()
	stdout, _ := mustPfs(t, "ls", "--long", "--store", store)
	files := map[string][]s3Part{}
	cur := ""
	lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	for _, line := range lines[1:] { // after the header
		if m := s3LsPartRE.FindStringSubmatch(line); m != nil {
			if cur == "" {
				t.Fatalf("pfs ls --long: part line before any file: %q", line)
			}
			n := func(s string) int64 { v, _ := strconv.ParseInt(s, 10, 64); return v }
			files[cur] = append(files[cur], s3Part{chunk: n(m[1]), offset: n(m[2]), length: n(m[3]), id: m[4], stored: n(m[5]), status: m[6]})
			continue
		}
		m := s3LsFileRE.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("pfs ls --long: unexpected line %q", line)
		}
		cur = m[2]
		if _, seen := files[cur]; !seen && !strings.HasSuffix(cur, "/") && !strings.Contains(cur, " -> ") {
			files[cur] = nil // a regular file, maybe without parts
		}
	}
	return files
}

// s3OpTimeout bounds one file operation while the server is down: the
// backend gives up after its retries (a few seconds per request), and an
// operation waits for at most a few requests in a row.
const s3OpTimeout = 40 * time.Second

// s3Timed runs op, file system calls on the mount of store, and returns
// how long it took and its error. Still blocked after s3OpTimeout is a
// hang, and fails the test: then unblock runs (say, restarting the
// server), and if op does not return within s3OpTimeout after that
// either, the daemon (which this test started) is killed, which ends
// every request on the mount, and the test stops.
func s3Timed(t *testing.T, store, what string, unblock func(), op func() error) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- op() }()
	select {
	case err := <-done:
		d := time.Since(start)
		t.Logf("%s: %v after %v", what, err, d.Round(time.Millisecond))
		return d, err
	case <-time.After(s3OpTimeout):
	}
	t.Errorf("%s: still blocked after %v: a hang, not a bounded retry\nlog:\n%s", what, s3OpTimeout, readLog(store))
	if unblock != nil {
		unblock()
		select {
		case err := <-done:
			d := time.Since(start)
			t.Logf("%s: %v after %v (unblocked)", what, err, d.Round(time.Millisecond))
			return d, err
		case <-time.After(s3OpTimeout):
		}
	}
	pid := daemonPid(t, store)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	err := <-done
	t.Fatalf("%s: killed the daemon (pid %d) to end the hang; then it returned %v", what, pid, err)
	return 0, err
}

// s3RunPfs is runPfs bounded by s3OpTimeout instead of cmdTimeout, for
// commands that talk to a server that is down: they must give up after
// their retries. It also returns how long the command took.
func s3RunPfs(t *testing.T, args ...string) (stdout, stderr string, code int, took time.Duration) {
	t.Helper()
	start := time.Now()
	stdout, stderr, code = runTimeout(t, s3OpTimeout, pfsBin, args...)
	took = time.Since(start)
	t.Logf("pfs %s: exit %d after %v", args[0], code, took.Round(time.Millisecond))
	return stdout, stderr, code, took
}
