package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// The pfs-s3 column: pfs with its parts in a bucket of versitygw (the
// Versity S3 gateway, installed by `make deps`) serving a directory on the
// same disk over 127.0.0.1. It shows what the network path (HTTP, signing,
// one request per part) costs next to the local backend.
const (
	gwAccess = "pfsbench"
	gwSecret = "pfsbench-secret"
	gwRegion = "us-east-1"
	gwBucket = "pfsbench"
)

// s3Gateway is a versitygw process started by setup and stopped by close.
type s3Gateway struct {
	dir      string // the posix directory behind the bucket
	log      string
	endpoint string
	cmd      *exec.Cmd
	exited   chan struct{}
}

// versitygwPath finds versitygw on PATH or in GOPATH/bin, where `make deps`
// (go install) puts it.
func versitygwPath() (string, error) {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, d := range filepath.SplitList(strings.TrimSpace(string(out))) {
			p := filepath.Join(d, "bin", "versitygw")
			if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
				return p, nil
			}
		}
	}
	return "", errors.New("versitygw is missing: pfs-s3 needs it (make deps installs it)")
}

func versitygwVersion() string {
	p, err := versitygwPath()
	if err != nil {
		return "versitygw (not installed)"
	}
	// go install builds report "git" to --version; the module version
	// is in the binary's build info.
	out, err := exec.Command("go", "version", "-m", p).Output()
	if err != nil {
		return "versitygw (version unknown)"
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "mod" && f[1] == "github.com/versity/versitygw" {
			return "versitygw " + f[2]
		}
	}
	return "versitygw (version unknown)"
}

// start runs the server on a free loopback port, waits until it answers,
// makes the bucket and gives pfs the credentials (the mount daemon
// inherits our environment).
func (g *s3Gateway) start(ctx context.Context) error {
	bin, err := versitygwPath()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(g.dir, 0o700); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	g.endpoint = ln.Addr().String()
	ln.Close()
	logf, err := os.OpenFile(g.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	g.cmd = exec.Command(bin, "--access", gwAccess, "--secret", gwSecret, "--port", g.endpoint, "--quiet", "posix", g.dir)
	g.cmd.Stdout, g.cmd.Stderr = logf, logf
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := g.cmd.Start(); err != nil {
		return fmt.Errorf("start versitygw: %w", err)
	}
	g.exited = make(chan struct{})
	go func() { _ = g.cmd.Wait(); close(g.exited) }()

	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(mountTimeout)
	for {
		resp, err := hc.Get("http://" + g.endpoint + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
		select {
		case <-g.exited:
			return fmt.Errorf("versitygw exited before it was ready: %s", tail(g.log))
		case <-ctx.Done():
			g.stop()
			return ctx.Err()
		case <-time.After(100 * time.Millisecond): // it has no readiness signal but the port
		}
		if time.Now().After(deadline) {
			g.stop()
			return fmt.Errorf("versitygw on %s not ready: %v", g.endpoint, err)
		}
	}
	c, err := minio.New(g.endpoint, &minio.Options{Creds: credentials.NewStaticV4(gwAccess, gwSecret, ""), Region: gwRegion})
	if err != nil {
		g.stop()
		return err
	}
	if err := c.MakeBucket(ctx, gwBucket, minio.MakeBucketOptions{Region: gwRegion}); err != nil {
		g.stop()
		return fmt.Errorf("versitygw: make bucket: %w", err)
	}
	for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": gwAccess, "AWS_SECRET_ACCESS_KEY": gwSecret, "AWS_SESSION_TOKEN": ""} {
		os.Setenv(k, v)
	}
	return nil
}

// pfsArgs are the mount flags that put a new store's parts in the bucket.
func (g *s3Gateway) pfsArgs() []string {
	return []string{"--backend", "s3://" + gwBucket + "/parts", "--s3-endpoint", g.endpoint,
		"--s3-region", gwRegion, "--s3-path-style", "--s3-no-ssl"}
}

func (g *s3Gateway) stop() {
	if g.cmd == nil {
		return
	}
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.exited:
	case <-time.After(10 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.exited
	}
	g.cmd = nil
}
