package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/pfs-project/pfs/chunkstore/backend"
)

func TestTransient(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{minio.ErrorResponse{Code: "SlowDown", StatusCode: 503}, true},
		{minio.ErrorResponse{Code: "InternalError", StatusCode: 500}, true},
		{minio.ErrorResponse{Code: "Whatever", StatusCode: 502}, true},
		{minio.ErrorResponse{Code: "RequestTimeout", StatusCode: 400}, true},
		{fmt.Errorf("wrapped: %w", minio.ErrorResponse{Code: "Throttling", StatusCode: 400}), true},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true},
		{fmt.Errorf("reading body: %w", io.ErrUnexpectedEOF), true},
		{minio.ErrorResponse{Code: "NoSuchKey", StatusCode: 404}, false},
		{minio.ErrorResponse{Code: "AccessDenied", StatusCode: 403}, false},
		{minio.ErrorResponse{Code: "InvalidRange", StatusCode: 416}, false},
		{fmt.Errorf("x: %w", backend.ErrInvalidRange), false},
		{errors.New("something else"), false},
	} {
		if got := transient(c.err); got != c.want {
			t.Errorf("transient(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestRetryBounded(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		maxRetries int
		err        error
		calls      int
	}{
		{3, minio.ErrorResponse{Code: "SlowDown", StatusCode: 503}, 4},
		{0, minio.ErrorResponse{Code: "SlowDown", StatusCode: 503}, 1},
		{3, minio.ErrorResponse{Code: "NoSuchKey", StatusCode: 404}, 1},
	} {
		s := &S3{maxRetries: c.maxRetries}
		calls := 0
		err := s.retry(ctx, func() error { calls++; return c.err })
		if calls != c.calls || !errors.Is(err, c.err) {
			t.Errorf("maxRetries %d, %v: %d calls, %v; want %d calls", c.maxRetries, c.err, calls, err, c.calls)
		}
	}

	// Success after transient failures.
	s := &S3{maxRetries: 5}
	calls := 0
	err := s.retry(ctx, func() error {
		if calls++; calls < 3 {
			return minio.ErrorResponse{Code: "SlowDown", StatusCode: 503}
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Errorf("retry = %v after %d calls, want nil after 3", err, calls)
	}

	// A cancelled context stops the waiting.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	calls = 0
	_ = s.retry(cctx, func() error { calls++; return minio.ErrorResponse{Code: "SlowDown", StatusCode: 503} })
	if calls != 1 {
		t.Errorf("retry with cancelled ctx made %d calls, want 1", calls)
	}
}
