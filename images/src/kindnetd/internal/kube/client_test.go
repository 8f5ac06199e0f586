package kube

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeAPIServer serves two nodes over TLS and checks the bearer token.
func fakeAPIServer(t *testing.T, token string) (*httptest.Server, string) {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"kind":"Status","message":"Unauthorized","reason":"Unauthorized","code":401}`))
			return
		}
		switch r.URL.Path {
		case "/api/v1/nodes":
			_, _ = w.Write([]byte(`{"kind":"NodeList","items":[` + workerJSON + `]}`))
		case "/api/v1/nodes/kind-worker":
			_, _ = w.Write([]byte(workerJSON))
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"kind":"Status","message":"nodes \"nope\" not found","reason":"NotFound","code":404}`))
		}
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, dir
}

func TestClientAgainstTLSServer(t *testing.T) {
	srv, dir := fakeAPIServer(t, "s3cret")
	c, err := NewClient([]string{srv.URL}, dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	n, err := c.GetNode(ctx, "kind-worker")
	if err != nil {
		t.Fatal(err)
	}
	if n.Name != "kind-worker" || len(n.PodCIDRs) != 2 {
		t.Errorf("GetNode = %+v", n)
	}
	nodes, err := c.ListNodes(ctx)
	if err != nil || len(nodes) != 1 {
		t.Fatalf("ListNodes = %v, %v", nodes, err)
	}
	if _, err := c.GetNode(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetNode(nope) err = %v, want ErrNotFound", err)
	}
	// The token is re-read per request: rotate it to a wrong one.
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("stale"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListNodes(ctx); err == nil || !strings.Contains(err.Error(), "HTTP 401: Unauthorized") {
		t.Errorf("with a wrong token: err = %v", err)
	}
}

func TestClientRejectsUnknownCA(t *testing.T) {
	srv, dir := fakeAPIServer(t, "t")
	// Replace the CA with an unrelated self-signed certificate.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := NewClient([]string{srv.URL}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListNodes(context.Background()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("err = %v, want a certificate error", err)
	}
}

func TestNewClientErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ url, dir, want string }{
		{"http://10.96.0.1", dir, "want https"},
		{"https://10.96.0.1:443", dir, "reading the cluster CA"},
	}
	for _, tt := range tests {
		if _, err := NewClient([]string{tt.url}, tt.dir); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewClient(%s) err = %v, want %q", tt.url, err, tt.want)
		}
	}
}

func TestClientFallsBackToTheNextAddress(t *testing.T) {
	srv, dir := fakeAPIServer(t, "t")
	// A closed port first: connection refused, so the second address is used and kept.
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := strings.Replace(dead.URL, "http://", "https://", 1)
	dead.Close()
	var logs strings.Builder
	c, err := NewClient([]string{deadURL, srv.URL}, dir)
	if err != nil {
		t.Fatal(err)
	}
	c.Log = slog.New(slog.NewTextHandler(&logs, nil))
	if _, err := c.ListNodes(context.Background()); err != nil {
		t.Fatalf("ListNodes: %v", err)
	}
	if c.Server() != srv.URL || !strings.Contains(logs.String(), "API server address switched") {
		t.Errorf("server = %s, logs = %s", c.Server(), logs.String())
	}
	// An HTTP error is an answer: no further fallback.
	if _, err := c.GetNode(context.Background(), "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("err = %v", err)
	}
	// Nothing reachable: every address's error is reported.
	srv.Close()
	_, err = c.ListNodes(context.Background())
	if err == nil || strings.Count(err.Error(), "connect") < 2 {
		t.Errorf("err = %v, want both addresses' errors", err)
	}
}
