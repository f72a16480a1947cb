// Package s3 stores objects in a bucket of an S3-compatible service through
// minio-go.
//
// Every object is one PUT (no multipart upload), so it appears whole or not
// at all, and a Save of an existing key replaces it atomically. Transient
// failures are retried here, a bounded number of times (Config.MaxRetries);
// minio-go's own retry loop is switched off so the two do not multiply.
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/pfs-project/pfs/chunkstore/backend"
)

var _ backend.Backend = (*S3)(nil)

// S3 is a backend storing objects in one bucket under a prefix.
type S3 struct {
	client     *minio.Client
	core       minio.Core // same client; GetObject returning errors at once
	transport  *http.Transport
	bucket     string
	prefix     string // "" or ends in "/"
	maxRetries int
}

// New connects to the service and checks that the bucket exists.
func New(ctx context.Context, cfg Config) (*S3, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = DefaultMaxRetries
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	tr, err := minio.DefaultTransport(cfg.UseSSL)
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	tr.DialContext = (&net.Dialer{Timeout: cfg.Timeout, KeepAlive: cfg.Timeout}).DialContext
	tr.TLSHandshakeTimeout = cfg.Timeout
	tr.ResponseHeaderTimeout = cfg.Timeout

	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:        creds(cfg),
		Secure:       cfg.UseSSL,
		Transport:    tr,
		Region:       cfg.Region,
		BucketLookup: lookup,
		MaxRetries:   1, // we retry, see retry
	})
	if err != nil {
		return nil, fmt.Errorf("s3: %s: %w", cfg.Endpoint, err)
	}
	s := &S3{
		client:     client,
		core:       minio.Core{Client: client},
		transport:  tr,
		bucket:     cfg.Bucket,
		prefix:     strings.Trim(cfg.Prefix, "/"),
		maxRetries: max(cfg.MaxRetries, 0),
	}
	if s.prefix != "" {
		s.prefix += "/"
	}
	var exists bool
	err = s.retry(ctx, func() (err error) {
		exists, err = client.BucketExists(ctx, cfg.Bucket)
		return err
	})
	if err == nil && !exists {
		// Not backend.ErrNotFound: that means a missing object, which
		// callers report as damage; a missing bucket is a setting.
		err = errors.New("bucket does not exist")
	}
	if err != nil {
		tr.CloseIdleConnections()
		return nil, fmt.Errorf("s3: %s/%s: %w", cfg.Endpoint, cfg.Bucket, err)
	}
	return s, nil
}

// creds returns the static credentials of cfg, or the AWS chain: the
// environment, then the shared credentials file.
func creds(cfg Config) *credentials.Credentials {
	if cfg.AccessKey != "" {
		return credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken)
	}
	return credentials.NewChainCredentials([]credentials.Provider{
		&credentials.EnvAWS{},
		&credentials.FileAWSCredentials{},
	})
}

// name returns the object name of key.
func (s *S3) name(key string) string {
	return s.prefix + key
}

// checkKey rejects keys that would not name a direct child of the prefix.
func checkKey(op, key string) error {
	if key == "" || strings.Contains(key, "/") {
		return fmt.Errorf("s3: %s %q: %w", op, key, backend.ErrInvalidKey)
	}
	return nil
}

// Save implements backend.Backend with one PutObject. The body is a
// bytes.Reader over data, so nothing is copied and retries re-read data;
// data is not referenced once Save returns.
func (s *S3) Save(ctx context.Context, key string, data []byte) error {
	if err := checkKey("save", key); err != nil {
		return err
	}
	name := s.name(key)
	err := s.retry(ctx, func() error {
		_, err := s.client.PutObject(ctx, s.bucket, name, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{
			ContentType:      "application/octet-stream",
			DisableMultipart: true, // one PUT: atomic, and no part buffers
			SendContentMd5:   true, // the service rejects a body damaged in transit
		})
		return err
	})
	if err != nil {
		return s.wrap("save", name, err)
	}
	return nil
}

// Load implements backend.Backend with a ranged GetObject.
func (s *S3) Load(ctx context.Context, key string, offset, length int64) ([]byte, error) {
	if err := checkKey("load", key); err != nil {
		return nil, err
	}
	name := s.name(key)
	if offset < 0 || length == 0 {
		// HTTP cannot ask for zero bytes; the size decides.
		size, err := s.Stat(ctx, key)
		if err != nil {
			return nil, err
		}
		if _, err := backend.CheckRange(size, offset, length); err != nil {
			return nil, fmt.Errorf("s3: load %s: %w", name, err)
		}
		return []byte{}, nil
	}
	var data []byte
	err := s.retry(ctx, func() (err error) {
		data, err = s.get(ctx, name, offset, length)
		return err
	})
	if isCode(err, minio.InvalidRange) {
		// offset is at or past the end. At the end is an empty read.
		size, serr := s.Stat(ctx, key)
		if serr != nil {
			return nil, serr
		}
		if _, rerr := backend.CheckRange(size, offset, length); rerr != nil {
			return nil, fmt.Errorf("s3: load %s: %w", name, rerr)
		}
		return []byte{}, nil
	}
	if err != nil {
		return nil, s.wrap("load", name, err)
	}
	return data, nil
}

// get is one attempt of Load for offset >= 0, length != 0. It checks the
// range against the size the server reports, since servers clamp ranges
// that run past the end and may ignore the Range header altogether.
func (s *S3) get(ctx context.Context, name string, offset, length int64) ([]byte, error) {
	var opts minio.GetObjectOptions
	ranged := offset > 0 || length > 0
	if ranged {
		end := int64(0) // "bytes=offset-"
		if length > 0 {
			end = offset + length - 1
		}
		if err := opts.SetRange(offset, end); err != nil {
			return nil, err
		}
	}
	body, info, hdr, err := s.core.GetObject(ctx, s.bucket, name, opts)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	var buf bytes.Buffer
	buf.Grow(int(max(info.Size, length, 0)) + bytes.MinRead)
	if _, err := buf.ReadFrom(body); err != nil {
		return nil, fmt.Errorf("reading body: %w", err)
	}
	data := buf.Bytes()

	start, size := int64(0), int64(len(data))
	if cr := hdr.Get("Content-Range"); cr != "" {
		if start, size, err = parseContentRange(cr); err != nil {
			return nil, err
		}
	}
	n, err := backend.CheckRange(size, offset, length)
	if err != nil {
		return nil, err // not retried: not transient
	}
	rel := offset - start
	if rel < 0 || rel+n > int64(len(data)) {
		return nil, fmt.Errorf("server sent %d bytes at %d, want %d at %d", len(data), start, n, offset)
	}
	return data[rel : rel+n], nil
}

// parseContentRange parses "bytes start-end/size".
func parseContentRange(cr string) (start, size int64, err error) {
	spec, ok := strings.CutPrefix(cr, "bytes ")
	rng, total, ok2 := strings.Cut(spec, "/")
	first, _, ok3 := strings.Cut(rng, "-")
	if ok && ok2 && ok3 {
		start, err = strconv.ParseInt(first, 10, 64)
		if err == nil {
			size, err = strconv.ParseInt(total, 10, 64)
		}
		if err == nil {
			return start, size, nil
		}
	}
	return 0, 0, fmt.Errorf("bad Content-Range %q", cr)
}

// Stat implements backend.Backend with StatObject.
func (s *S3) Stat(ctx context.Context, key string) (int64, error) {
	if err := checkKey("stat", key); err != nil {
		return 0, err
	}
	name := s.name(key)
	var info minio.ObjectInfo
	err := s.retry(ctx, func() (err error) {
		info, err = s.client.StatObject(ctx, s.bucket, name, minio.StatObjectOptions{})
		return err
	})
	if err != nil {
		return 0, s.wrap("stat", name, err)
	}
	return info.Size, nil
}

// Delete implements backend.Backend. S3 deletes succeed for missing
// objects, so Delete stats first to return ErrNotFound as the contract
// says. The two requests are not atomic: of two concurrent Deletes of one
// key, both may succeed.
func (s *S3) Delete(ctx context.Context, key string) error {
	if _, err := s.Stat(ctx, key); err != nil {
		return err
	}
	name := s.name(key)
	err := s.retry(ctx, func() error {
		return s.client.RemoveObject(ctx, s.bucket, name, minio.RemoveObjectOptions{})
	})
	if err != nil {
		return s.wrap("delete", name, err)
	}
	return nil
}

// List implements backend.Backend with ListObjectsV2 under the prefix.
// Objects whose names are not prefix + a valid key are skipped. A listing
// that fails transiently resumes after the last key listed.
func (s *S3) List(ctx context.Context, fn func(key string, size int64) error) error {
	var after string // last object name passed to fn
	var fnErr error
	err := s.retry(ctx, func() error {
		opts := minio.ListObjectsOptions{Prefix: s.prefix, StartAfter: after}
		for obj := range s.client.ListObjectsIter(ctx, s.bucket, opts) {
			if obj.Err != nil {
				return obj.Err
			}
			after = obj.Key
			key := strings.TrimPrefix(obj.Key, s.prefix)
			if checkKey("list", key) != nil {
				continue
			}
			if fnErr = fn(key, obj.Size); fnErr != nil {
				return nil
			}
		}
		return nil
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return s.wrap("list", s.prefix, err)
	}
	return nil
}

// Usage implements backend.Backend. S3 has no capacity: total is 0.
func (s *S3) Usage(ctx context.Context) (total, free uint64, err error) {
	return 0, 0, nil
}

// Close implements backend.Backend. It closes idle connections.
func (s *S3) Close() error {
	s.transport.CloseIdleConnections()
	return nil
}

// wrap adds the operation and object to err and marks missing objects and
// bad ranges with the backend's sentinels.
func (s *S3) wrap(op, name string, err error) error {
	switch {
	case isCode(err, minio.NoSuchKey), isCode(err, "NotFound"):
		return fmt.Errorf("s3: %s %s/%s: %w: %w", op, s.bucket, name, backend.ErrNotFound, err)
	case isCode(err, minio.InvalidRange):
		return fmt.Errorf("s3: %s %s/%s: %w: %w", op, s.bucket, name, backend.ErrInvalidRange, err)
	}
	return fmt.Errorf("s3: %s %s/%s: %w", op, s.bucket, name, err)
}

// isCode reports whether err is an S3 error response with the given code.
func isCode(err error, code string) bool {
	var resp minio.ErrorResponse
	return errors.As(err, &resp) && resp.Code == code
}
