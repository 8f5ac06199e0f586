package kube

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
type Client struct {
	base      *url.URL
	http      *http.Client
	tokenPath string
	userAgent string
}

// NewClient builds a client for apiServer (https://host:port) trusting the CA in
// saDir/ca.crt and authenticating with saDir/token.
func NewClient(apiServer, saDir string) (*Client, error) {
	u, err := url.Parse(apiServer)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("API server URL %q: want https://host:port", apiServer)
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
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
		MaxIdleConns:        2,
	}
	return &Client{
		base:      u,
		http:      &http.Client{Transport: tr, Timeout: 15 * time.Second},
		tokenPath: tokenPath,
		userAgent: "kindnetd/0.1.0 (svcconform)",
	}, nil
}

// Server is the API server base URL.
func (c *Client) Server() string { return c.base.String() }

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
	u := *c.base
	u.Path = strings.TrimRight(u.Path, "/") + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s: reading body: %w", u.Path, err)
	}
	if resp.StatusCode != http.StatusOK {
		msg := StatusMessage(body)
		if resp.StatusCode == http.StatusNotFound {
			return nil, fmt.Errorf("GET %s: %w: %s", u.Path, ErrNotFound, msg)
		}
		return nil, fmt.Errorf("GET %s: HTTP %d: %s", u.Path, resp.StatusCode, msg)
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
