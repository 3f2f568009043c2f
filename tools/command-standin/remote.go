package main

// command:remote:Command: runs the command string in one SSH session on the
// `connection` host (optionally through a `proxy` jump host), with `stdin`
// on standard input and `environment` sent with Setenv (a refusal by sshd is
// ignored).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

type connSpec struct {
	host, user, password     string
	port                     int
	privateKey, keyPassword  string
	hostKey, agentSocketPath string
	dialErrorLimit           int
	perDialTimeout           time.Duration
}

func (c connSpec) addr() string {
	return net.JoinHostPort(c.host, strconv.Itoa(c.port))
}

func parseConn(m resource.PropertyMap, what string) (connSpec, error) {
	c := connSpec{
		host:            getString(m, "host"),
		user:            getString(m, "user"),
		password:        getString(m, "password"),
		port:            int(getNumber(m, "port", 22)),
		privateKey:      getString(m, "privateKey"),
		keyPassword:     getString(m, "privateKeyPassword"),
		hostKey:         strings.TrimSpace(getString(m, "hostKey")),
		agentSocketPath: getString(m, "agentSocketPath"),
		dialErrorLimit:  int(getNumber(m, "dialErrorLimit", 10)),
		perDialTimeout:  time.Duration(getNumber(m, "perDialTimeout", 15) * float64(time.Second)),
	}
	if c.host == "" {
		return c, fmt.Errorf("%s: host is required", what)
	}
	if c.user == "" {
		c.user = "root"
	}
	if c.port == 0 {
		c.port = 22
	}
	if c.perDialTimeout <= 0 {
		c.perDialTimeout = 15 * time.Second
	}
	if c.dialErrorLimit == 0 {
		c.dialErrorLimit = 10
	}
	return c, nil
}

// clientConfig builds the SSH client configuration: auth by private key,
// password and/or agent; host key pinned when hostKey is set, otherwise any
// host key is accepted (as pulumi-command does).
func (c connSpec) clientConfig() (*ssh.ClientConfig, func(), error) {
	cfg := &ssh.ClientConfig{User: c.user, Timeout: c.perDialTimeout}
	cleanup := func() {}
	if c.privateKey != "" {
		var signer ssh.Signer
		var err error
		if c.keyPassword != "" {
			signer, err = ssh.ParsePrivateKeyWithPassphrase([]byte(c.privateKey), []byte(c.keyPassword))
		} else {
			signer, err = ssh.ParsePrivateKey([]byte(c.privateKey))
		}
		if err != nil {
			return nil, cleanup, fmt.Errorf("parsing the private key for %s: %w", c.addr(), err)
		}
		cfg.Auth = append(cfg.Auth, ssh.PublicKeys(signer))
	}
	if c.password != "" {
		pw := c.password
		cfg.Auth = append(cfg.Auth, ssh.Password(pw),
			ssh.KeyboardInteractive(func(_, _ string, questions []string, _ []bool) ([]string, error) {
				answers := make([]string, len(questions))
				for i := range answers {
					answers[i] = pw
				}
				return answers, nil
			}))
	}
	sock := c.agentSocketPath
	if sock == "" && c.privateKey == "" && c.password == "" {
		sock = os.Getenv("SSH_AUTH_SOCK")
	}
	if sock != "" {
		if conn, err := net.Dial("unix", sock); err == nil {
			cfg.Auth = append(cfg.Auth, ssh.PublicKeysCallback(agent.NewClient(conn).Signers))
			cleanup = func() { _ = conn.Close() }
		} else if c.agentSocketPath != "" {
			return nil, cleanup, fmt.Errorf("connecting to the SSH agent at %s: %w", sock, err)
		}
	}
	if c.hostKey == "" {
		cfg.HostKeyCallback = ssh.InsecureIgnoreHostKey() //nolint:gosec // documented: no hostKey, no pinning
		return cfg, cleanup, nil
	}
	want, _, _, _, err := ssh.ParseAuthorizedKey([]byte(c.hostKey))
	if err != nil {
		cleanup()
		return nil, func() {}, fmt.Errorf("parsing hostKey for %s: %w", c.addr(), err)
	}
	// Ask the server for the pinned key's type, so a server with several
	// host keys offers the one we know.
	switch want.Type() {
	case ssh.KeyAlgoRSA:
		cfg.HostKeyAlgorithms = []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	default:
		cfg.HostKeyAlgorithms = []string{want.Type()}
	}
	addr := c.addr()
	cfg.HostKeyCallback = func(_ string, _ net.Addr, got ssh.PublicKey) error {
		if bytes.Equal(got.Marshal(), want.Marshal()) {
			return nil
		}
		return fmt.Errorf("host key mismatch for %s: the server offered %s %s, hostKey is %s %s",
			addr, got.Type(), ssh.FingerprintSHA256(got), want.Type(), ssh.FingerprintSHA256(want))
	}
	return cfg, cleanup, nil
}

// retryable tells connection errors (worth another dial) from auth and host
// key errors (not).
func retryable(err error) bool {
	msg := err.Error()
	for _, s := range []string{"unable to authenticate", "host key mismatch", "no supported methods",
		"parsing the private key", "parsing hostKey", "no common algorithm"} {
		if strings.Contains(msg, s) {
			return false
		}
	}
	return true
}

// withRetries calls dial until it succeeds, fails with a non-retryable error,
// or has failed dialErrorLimit times (-1: no limit).
func withRetries(ctx context.Context, c connSpec, log logFunc, dial func() (*ssh.Client, error)) (*ssh.Client, error) {
	backoff := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		client, err := dial()
		if err == nil {
			return client, nil
		}
		if !retryable(err) || (c.dialErrorLimit > 0 && attempt >= c.dialErrorLimit) {
			if attempt > 1 {
				return nil, fmt.Errorf("dialing %s (%d attempts): %w", c.addr(), attempt, err)
			}
			return nil, fmt.Errorf("dialing %s: %w", c.addr(), err)
		}
		if log != nil {
			log(fmt.Sprintf("command-provider stand-in: dial %s failed (attempt %d): %v; retrying", c.addr(), attempt, err))
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("dialing %s: %w (last error: %v)", c.addr(), ctx.Err(), err)
		case <-time.After(backoff):
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}

// handshake runs the SSH handshake over conn within the per-dial timeout.
func handshake(conn net.Conn, addr string, cfg *ssh.ClientConfig, timeout time.Duration) (*ssh.Client, error) {
	_ = conn.SetDeadline(time.Now().Add(timeout))
	cc, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(cc, chans, reqs), nil
}

// connect dials the target, through the proxy when one is given. The
// returned closer closes every connection it opened.
func connect(ctx context.Context, conn resource.PropertyMap, log logFunc) (*ssh.Client, func(), error) {
	target, err := parseConn(conn, "connection")
	if err != nil {
		return nil, nil, err
	}
	cfg, cleanTarget, err := target.clientConfig()
	if err != nil {
		return nil, nil, err
	}
	proxyProps := getObject(conn, "proxy")
	if proxyProps == nil {
		client, err := withRetries(ctx, target, log, func() (*ssh.Client, error) {
			d := net.Dialer{Timeout: target.perDialTimeout}
			nc, err := d.DialContext(ctx, "tcp", target.addr())
			if err != nil {
				return nil, err
			}
			return handshake(nc, target.addr(), cfg, target.perDialTimeout)
		})
		if err != nil {
			cleanTarget()
			return nil, nil, err
		}
		return client, func() { _ = client.Close(); cleanTarget() }, nil
	}

	proxy, err := parseConn(proxyProps, "connection.proxy")
	if err != nil {
		cleanTarget()
		return nil, nil, err
	}
	pcfg, cleanProxy, err := proxy.clientConfig()
	if err != nil {
		cleanTarget()
		return nil, nil, err
	}
	cleanAll := func() { cleanTarget(); cleanProxy() }
	proxyClient, err := withRetries(ctx, proxy, log, func() (*ssh.Client, error) {
		d := net.Dialer{Timeout: proxy.perDialTimeout}
		nc, err := d.DialContext(ctx, "tcp", proxy.addr())
		if err != nil {
			return nil, err
		}
		return handshake(nc, proxy.addr(), pcfg, proxy.perDialTimeout)
	})
	if err != nil {
		cleanAll()
		return nil, nil, fmt.Errorf("proxy: %w", err)
	}
	client, err := withRetries(ctx, target, log, func() (*ssh.Client, error) {
		nc, err := proxyClient.DialContext(ctx, "tcp", target.addr())
		if err != nil {
			return nil, err
		}
		return handshake(nc, target.addr(), cfg, target.perDialTimeout)
	})
	if err != nil {
		_ = proxyClient.Close()
		cleanAll()
		return nil, nil, fmt.Errorf("via proxy %s: %w", proxy.addr(), err)
	}
	return client, func() { _ = client.Close(); _ = proxyClient.Close(); cleanAll() }, nil
}

func runRemote(ctx context.Context, command string, props resource.PropertyMap,
	extraEnv map[string]string, log logFunc,
) (string, string, error) {
	out, err := newOutputs(getString(props, "logging"), log)
	if err != nil {
		return "", "", err
	}
	connProps := getObject(props, "connection")
	if connProps == nil {
		return "", "", errors.New("connection is required")
	}
	client, closeAll, err := connect(ctx, connProps, log)
	if err != nil {
		return "", "", err
	}
	defer closeAll()

	session, err := client.NewSession()
	if err != nil {
		return "", "", fmt.Errorf("opening an SSH session: %w", err)
	}
	defer func() { _ = session.Close() }()
	env := getStringMap(props, "environment")
	if env == nil {
		env = map[string]string{}
	}
	for k, v := range extraEnv {
		env[k] = v
	}
	for _, kv := range sortedEnv(env) {
		k, v, _ := strings.Cut(kv, "=")
		_ = session.Setenv(k, v) // sshd may refuse (AcceptEnv): ignored, as pulumi-command does
	}
	if _, ok := get(props, "stdin"); ok {
		session.Stdin = strings.NewReader(getString(props, "stdin"))
	}
	session.Stdout = out.stdout
	session.Stderr = out.stderr

	done := make(chan error, 1)
	go func() { done <- session.Run(command) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = session.Signal(ssh.SIGTERM)
		closeAll()
		err = fmt.Errorf("cancelled: %w", ctx.Err())
		<-done
	}
	out.flush()
	if err != nil {
		var exitErr *ssh.ExitError
		var missing *ssh.ExitMissingError
		switch {
		case errors.As(err, &exitErr):
			// "Process exited with status N" (and the signal, if any)
		case errors.As(err, &missing), errors.Is(err, io.EOF):
			err = fmt.Errorf("the SSH session to %s ended without an exit status (connection lost?): %w",
				client.RemoteAddr(), err)
		}
		return out.stdout.text(), out.stderr.text(), runError(err, command, out)
	}
	return out.stdout.text(), out.stderr.text(), nil
}
