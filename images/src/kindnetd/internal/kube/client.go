package kube

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DefaultServiceAccountDir is where the kubelet mounts the pod's token and CA.
const DefaultServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// ErrNotFound is returned for a 404 from the API server.
var ErrNotFound = errors.New("not found")

// Client is a read-only Node client for the API server, using the pod's
// service account. The token is re-read on every request (bound tokens rotate).
// It knows one or more addresses of the API server and moves on to the next
// when one cannot be reached at all (DNS, connect or TLS failure); an HTTP
// error answer is returned as is. A Client is not safe for concurrent use.
type Client struct {
	servers   []*url.URL
	current   int
	http      *http.Client
	tokenPath string
	userAgent string
	// Log, if set, is told when the client switches API server address.
	Log *slog.Logger
}

// NewClient builds a client for the API server addresses (https://host:port,
// tried in order) trusting the CA in saDir/ca.crt and authenticating with saDir/token.
func NewClient(servers []string, saDir string) (*Client, error) {
	if len(servers) == 0 {
		return nil, errors.New("no API server address")
	}
	var urls []*url.URL
	for _, s := range servers {
		u, err := url.Parse(s)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("API server URL %q: want https://host:port", s)
		}
		urls = append(urls, u)
	}
	caPath := filepath.Join(saDir, "ca.crt")
	pem, err := os.ReadFile(caPath)
	if err != nil {
		return nil, fmt.Errorf("reading the cluster CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caPath)
	}
	tokenPath := filepath.Join(saDir, "token")
	if _, err := os.Stat(tokenPath); err != nil {
		return nil, fmt.Errorf("service account token: %w", err)
	}
	tr := &http.Transport{
		Proxy:               nil, // never use an HTTP proxy for the API server
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
		MaxIdleConns:        2,
	}
	return &Client{
		servers:   urls,
		http:      &http.Client{Transport: tr, Timeout: 15 * time.Second},
		tokenPath: tokenPath,
		userAgent: "kindnetd/0.1.0 (svcconform)",
	}, nil
}

// Server is the API server base URL currently in use.
func (c *Client) Server() string { return c.servers[c.current].String() }

// GetNode fetches one node.
func (c *Client) GetNode(ctx context.Context, name string) (Node, error) {
	body, err := c.get(ctx, "/api/v1/nodes/"+url.PathEscape(name))
	if err != nil {
		return Node{}, fmt.Errorf("getting node %s: %w", name, err)
	}
	return ParseNode(body)
}

// ListNodes lists all nodes, sorted by name.
func (c *Client) ListNodes(ctx context.Context) ([]Node, error) {
	body, err := c.get(ctx, "/api/v1/nodes")
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	return ParseNodeList(body)
}

func (c *Client) get(ctx context.Context, path string) ([]byte, error) {
	token, err := os.ReadFile(c.tokenPath)
	if err != nil {
		return nil, fmt.Errorf("reading service account token: %w", err)
	}
	var errs []error
	for i := range c.servers {
		idx := (c.current + i) % len(c.servers)
		body, err := c.getFrom(ctx, c.servers[idx], path, strings.TrimSpace(string(token)))
		var unreachable *unreachableError
		if errors.As(err, &unreachable) && ctx.Err() == nil {
			errs = append(errs, err)
			continue
		}
		if idx != c.current {
			if c.Log != nil {
				c.Log.Warn("API server address switched", "from", c.servers[c.current].String(), "to", c.servers[idx].String(), "because", errors.Join(errs...))
			}
			c.current = idx
		}
		return body, err
	}
	return nil, errors.Join(errs...)
}

// unreachableError is a request that got no HTTP answer at all.
type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return e.err.Error() }
func (e *unreachableError) Unwrap() error { return e.err }

func (c *Client) getFrom(ctx context.Context, base *url.URL, path, token string) ([]byte, error) {
	u := *base
	u.Path = strings.TrimRight(u.Path, "/") + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &unreachableError{err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s: reading body: %w", u.String(), err)
	}
	if resp.StatusCode != http.StatusOK {
		msg := StatusMessage(body)
		if resp.StatusCode == http.StatusNotFound {
			return nil, fmt.Errorf("GET %s: %w: %s", u.String(), ErrNotFound, msg)
		}
		return nil, fmt.Errorf("GET %s: HTTP %d: %s", u.String(), resp.StatusCode, msg)
	}
	return body, nil
}

// StatusMessage extracts the message of a metav1.Status error body, or a
// trimmed excerpt of a non-Status body.
func StatusMessage(body []byte) string {
	var st struct {
		Kind    string `json:"kind"`
		Message string `json:"message"`
		Reason  string `json:"reason"`
	}
	if json.Unmarshal(body, &st) == nil && st.Kind == "Status" && st.Message != "" {
		if st.Reason != "" {
			return st.Message + " (" + st.Reason + ")"
		}
		return st.Message
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	if s == "" {
		return "(empty body)"
	}
	return s
}
