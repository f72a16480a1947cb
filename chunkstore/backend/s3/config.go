package s3

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// Defaults used by DefaultConfig and for zero fields of Config.
const (
	DefaultEndpoint   = "s3.amazonaws.com"
	DefaultMaxRetries = 5
	DefaultTimeout    = 30 * time.Second
)

// Config says where the objects live and how to reach them.
type Config struct {
	// Endpoint is host[:port] of the S3 service, without scheme.
	Endpoint string
	// Bucket must exist. Objects are named Prefix + "/" + key, or just key
	// when Prefix is empty; leading and trailing slashes of Prefix are
	// ignored.
	Bucket, Prefix string
	// Region is the bucket's region; empty asks the service for it.
	Region string
	// AccessKey and SecretKey (and SessionToken for temporary credentials)
	// authenticate requests. When AccessKey is empty they come from
	// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, then
	// from the shared credentials file (~/.aws/credentials, AWS_PROFILE).
	AccessKey, SecretKey, SessionToken string
	// UseSSL selects https.
	UseSSL bool
	// PathStyle forces http://endpoint/bucket/object URLs instead of
	// virtual-host style http://bucket.endpoint/object. Most non-AWS
	// servers need it; for IP endpoints it is automatic.
	PathStyle bool
	// MaxRetries is how often a request that failed transiently (network
	// error, timeout, 5xx, throttling) is retried, with exponential backoff,
	// before the error is returned. 0 means DefaultMaxRetries; -1 means no
	// retries.
	MaxRetries int
	// Timeout bounds connecting and waiting for the response headers of
	// one attempt; 0 means DefaultTimeout. It does not limit how long a
	// body takes to transfer.
	Timeout time.Duration
}

// DefaultConfig returns a Config for AWS S3 with credentials from the
// environment. Bucket must still be set.
func DefaultConfig() Config {
	return Config{
		Endpoint:   DefaultEndpoint,
		UseSSL:     true,
		MaxRetries: DefaultMaxRetries,
		Timeout:    DefaultTimeout,
	}
}

// ParseURL returns DefaultConfig with Bucket and Prefix taken from a URL of
// the form s3://bucket/prefix (the prefix is optional).
func ParseURL(rawURL string) (Config, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return Config{}, fmt.Errorf("s3: %w", err)
	}
	if u.Scheme != "s3" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return Config{}, fmt.Errorf("s3: %q: want s3://bucket/prefix", rawURL)
	}
	cfg := DefaultConfig()
	cfg.Bucket = u.Host
	cfg.Prefix = strings.Trim(u.Path, "/")
	return cfg, cfg.Validate()
}

// Validate reports the first invalid field of c.
func (c Config) Validate() error {
	switch {
	case c.Endpoint == "":
		return errors.New("s3: no endpoint")
	case strings.Contains(c.Endpoint, "://"):
		return fmt.Errorf("s3: endpoint %q: want host[:port] without scheme", c.Endpoint)
	case c.MaxRetries < -1:
		return fmt.Errorf("s3: MaxRetries %d: want >= -1", c.MaxRetries)
	case c.Timeout < 0:
		return fmt.Errorf("s3: Timeout %v: want >= 0", c.Timeout)
	case c.SecretKey != "" && c.AccessKey == "", c.SessionToken != "" && c.AccessKey == "":
		return errors.New("s3: SecretKey or SessionToken without AccessKey")
	}
	if err := s3utils.CheckValidBucketName(c.Bucket); err != nil {
		return fmt.Errorf("s3: bucket %q: %w", c.Bucket, err)
	}
	return nil
}
