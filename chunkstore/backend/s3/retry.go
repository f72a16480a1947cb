package s3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
)

// Backoff between attempts: the n-th retry waits a random time in
// [d/2, d), d = retryBase << n, capped at retryCap. With
// DefaultMaxRetries that is at most about 3 s of waiting in total.
const (
	retryBase = 100 * time.Millisecond
	retryCap  = 5 * time.Second
)

// retry calls fn until it succeeds, fails with an error that is not
// transient, ctx ends, or it has been retried s.maxRetries times. It
// returns fn's last error, annotated with the attempt count when retries
// were spent.
func (s *S3) retry(ctx context.Context, fn func() error) error {
	for attempt := 0; ; attempt++ {
		err := fn()
		if err == nil || !transient(err) || ctx.Err() != nil {
			return err
		}
		if attempt == s.maxRetries {
			if attempt == 0 {
				return err
			}
			return fmt.Errorf("%d attempts: %w", attempt+1, err)
		}
		d := min(retryBase<<attempt, retryCap)
		d = d/2 + rand.N(d/2)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
	}
}

// S3 error codes worth another attempt (minio-go's list, plus
// ServiceUnavailable).
var transientCodes = map[string]bool{
	"RequestError":          true,
	"RequestTimeout":        true,
	"Throttling":            true,
	"ThrottlingException":   true,
	"RequestLimitExceeded":  true,
	"RequestThrottled":      true,
	"InternalError":         true,
	"ExpiredToken":          true,
	"ExpiredTokenException": true,
	"ServiceUnavailable":    true,
	"SlowDown":              true,
	"SlowDownWrite":         true,
	"SlowDownRead":          true,
}

// transient reports whether err may go away if the request is repeated:
// throttling, server errors, timeouts and broken connections. The caller
// checks its context itself; a timeout of one attempt is transient.
func transient(err error) bool {
	var resp minio.ErrorResponse
	if errors.As(err, &resp) {
		switch resp.StatusCode {
		case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
			http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return transientCodes[resp.Code]
	}
	var (
		unknownCA x509.UnknownAuthorityError
		badCert   x509.CertificateInvalidError
		badHost   x509.HostnameError
		notTLS    tls.RecordHeaderError
	)
	if errors.As(err, &unknownCA) || errors.As(err, &badCert) || errors.As(err, &badHost) || errors.As(err, &notTLS) {
		return false // configuration, not luck
	}
	var netErr net.Error // includes *url.Error and *net.OpError
	return errors.As(err, &netErr) ||
		errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, context.DeadlineExceeded) // the transport's, not ctx's
}
