package redistier

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Defaults of the Config and of the Options.
const (
	DefaultKeyPrefix    = "portcullis:"
	DefaultTimeout      = 100 * time.Millisecond
	DefaultLockTTL      = 10 * time.Second
	DefaultLockWait     = 5 * time.Second
	DefaultPollInterval = 20 * time.Millisecond
	DefaultHealthCheck  = 5 * time.Second
	// MaxValueSize bounds one stored decision, encoded; larger ones are neither written nor
	// read (a value that large read from Redis is a miss).
	MaxValueSize = 64 << 10
	// maxKeyPrefix bounds keyPrefix.
	maxKeyPrefix = 128
)

// Config says how to reach Redis: one of Addr (a single server), Sentinel (a master found
// through Redis Sentinel) or Cluster (Redis Cluster).
type Config struct {
	// Addr is host:port of a single Redis server.
	Addr string `mapstructure:"addr"`
	// Sentinel finds the master through Redis Sentinel.
	Sentinel *Sentinel `mapstructure:"sentinel"`
	// Cluster talks to a Redis Cluster.
	Cluster *Cluster `mapstructure:"cluster"`
	// Username is the ACL user (Redis 6 and later); empty for the default user.
	Username string `mapstructure:"username"`
	// PasswordFile holds the password (one trailing newline is ignored); empty for none.
	PasswordFile string `mapstructure:"passwordFile"`
	// DB is the database number; Redis Cluster has only 0. Default 0.
	DB  int `mapstructure:"db"`
	TLS TLS `mapstructure:"tls"`
	// KeyPrefix starts every key and the invalidation channel, so that several portcullis
	// fleets (or other users) can share one Redis. Default (and empty) "portcullis:".
	KeyPrefix string `mapstructure:"keyPrefix"`
	// Timeout bounds every Redis call (connecting included); past it the call counts as a
	// failure and portcullis decides on its own. Default (and 0) 100ms.
	Timeout time.Duration `mapstructure:"timeout"`
}

// Sentinel names a master monitored by Redis Sentinel.
type Sentinel struct {
	// MasterName is the name the sentinels know the master by.
	MasterName string `mapstructure:"masterName"`
	// Addrs are host:port of sentinels.
	Addrs []string `mapstructure:"addrs"`
}

// Cluster lists nodes of a Redis Cluster to discover it from.
type Cluster struct {
	// Addrs are host:port of some of its nodes.
	Addrs []string `mapstructure:"addrs"`
}

// TLS configures TLS to Redis.
type TLS struct {
	// Enabled turns TLS on; the other fields need it.
	Enabled bool `mapstructure:"enabled"`
	// CAFile holds PEM certificates of the authorities to trust instead of the system's.
	CAFile string `mapstructure:"caFile"`
	// ServerName is the name the server's certificate must have, when it is not the host of
	// the address.
	ServerName string `mapstructure:"serverName"`
	// InsecureSkipVerify accepts any server certificate: anyone on the path to Redis can then
	// read and forge decisions. For tests only.
	InsecureSkipVerify bool `mapstructure:"insecureSkipVerify"`
}

// Validate checks c; errors name the key relative to c (e.g. "sentinel.masterName").
func (c *Config) Validate() error {
	var errs []error
	modes := 0
	if c.Addr != "" {
		modes++
		if err := validateAddr(c.Addr); err != nil {
			errs = append(errs, fmt.Errorf("addr: %w", err))
		}
	}
	if c.Sentinel != nil {
		modes++
		if c.Sentinel.MasterName == "" {
			errs = append(errs, errors.New("sentinel.masterName: must be set"))
		}
		errs = append(errs, validateAddrs("sentinel.addrs", c.Sentinel.Addrs)...)
	}
	if c.Cluster != nil {
		modes++
		errs = append(errs, validateAddrs("cluster.addrs", c.Cluster.Addrs)...)
		if c.DB != 0 {
			errs = append(errs, errors.New("db: Redis Cluster has only database 0"))
		}
	}
	if modes != 1 {
		errs = append(errs, fmt.Errorf("addr: set exactly one of addr, sentinel and cluster (%d are set)", modes))
	}
	if c.DB < 0 {
		errs = append(errs, fmt.Errorf("db: %d is negative", c.DB))
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("timeout: must not be negative"))
	}
	if len(c.KeyPrefix) > maxKeyPrefix {
		errs = append(errs, fmt.Errorf("keyPrefix: longer than %d bytes", maxKeyPrefix))
	}
	if strings.ContainsAny(c.KeyPrefix, "{} \r\n") {
		errs = append(errs, fmt.Errorf("keyPrefix: %q has braces (Redis Cluster hash tags) or white space", c.KeyPrefix))
	}
	if !c.TLS.Enabled && (c.TLS.CAFile != "" || c.TLS.ServerName != "" || c.TLS.InsecureSkipVerify) {
		errs = append(errs, errors.New("tls: caFile, serverName and insecureSkipVerify need tls.enabled: true"))
	}
	if c.TLS.InsecureSkipVerify && c.TLS.CAFile != "" {
		errs = append(errs, errors.New("tls: caFile and insecureSkipVerify conflict"))
	}
	return errors.Join(errs...)
}

func validateAddrs(key string, addrs []string) []error {
	if len(addrs) == 0 {
		return []error{fmt.Errorf("%s: at least one host:port is needed", key)}
	}
	var errs []error
	for i, a := range addrs {
		if err := validateAddr(a); err != nil {
			errs = append(errs, fmt.Errorf("%s[%d]: %w", key, i, err))
		}
	}
	return errs
}

func validateAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("%q: port %q is not a number from 1 to 65535", addr, port)
	}
	return nil
}

// Password reads PasswordFile, less one trailing newline; "" when none is set.
func (c *Config) Password() (string, error) {
	if c.PasswordFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(c.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("passwordFile: %w", err)
	}
	return strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"), nil
}

// Prefix returns KeyPrefix or its default.
func (c *Config) Prefix() string {
	if c.KeyPrefix == "" {
		return DefaultKeyPrefix
	}
	return c.KeyPrefix
}

// CallTimeout returns Timeout or its default.
func (c *Config) CallTimeout() time.Duration {
	if c.Timeout == 0 {
		return DefaultTimeout
	}
	return c.Timeout
}

// NewClient returns a go-redis client for c (which must be valid) authenticating with
// password: a failover client for Sentinel, a cluster client for Cluster, a plain one for
// Addr. Every call is bounded by the timeout and never retried: a failed call is a miss.
func NewClient(c *Config, password string) (redis.UniversalClient, error) {
	timeout := c.CallTimeout()
	o := &redis.UniversalOptions{
		Username: c.Username, Password: password, DB: c.DB,
		DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout, PoolTimeout: timeout,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		DialerRetries:         1,
		DisableIdentity:       true,
		ClientName:            "portcullis",
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	}
	if c.TLS.Enabled {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLS.ServerName, InsecureSkipVerify: c.TLS.InsecureSkipVerify} //nolint:gosec // named for what it is; tests only
		if c.TLS.CAFile != "" {
			pem, err := os.ReadFile(c.TLS.CAFile)
			if err != nil {
				return nil, fmt.Errorf("tls.caFile: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("tls.caFile: %s holds no PEM certificate", c.TLS.CAFile)
			}
			tc.RootCAs = pool
		}
		o.TLSConfig = tc
	}
	switch {
	case c.Sentinel != nil:
		o.MasterName, o.Addrs = c.Sentinel.MasterName, c.Sentinel.Addrs
		return redis.NewFailoverClient(o.Failover()), nil
	case c.Cluster != nil:
		o.Addrs = c.Cluster.Addrs
		return redis.NewClusterClient(o.Cluster()), nil
	default:
		o.Addrs = []string{c.Addr}
		return redis.NewClient(o.Simple()), nil
	}
}
