package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// startNATSFromConfig runs a nats-server from a config file, as an
// operator would start theirs.
func startNATSFromConfig(t *testing.T, path string) *server.Server {
	t.Helper()
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server config %s: %v", path, err)
	}
	opts.NoSigs = true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

func waitHealthy(t *testing.T, addr string) {
	t.Helper()
	waitFor(t, "broker /healthz", func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// TestExternalNATS is docs/security.md's external NATS setup: broker auth
// init, a nats-server that includes the config it wrote, the broker on it
// with the account signing key, and the same issuing commands as on the
// embedded server. Revoking says what the operator must do.
func TestExternalNATS(t *testing.T) {
	bin := build(t)
	dir := t.TempDir()
	authDir := filepath.Join(dir, "auth")
	out, err := exec.Command(filepath.Join(bin, "broker"), "auth", "init", authDir).CombinedOutput()
	if err != nil {
		t.Fatalf("broker auth init: %v\n%s", err, out)
	}
	for _, want := range []string{"include plugbus-auth.conf", "--account-signing-key " + filepath.Join(authDir, "signing.nk"), "--creds " + filepath.Join(authDir, "creds", "admin.creds")} {
		if !strings.Contains(string(out), want) {
			t.Errorf("broker auth init does not say %q:\n%s", want, out)
		}
	}
	for _, f := range []string{"operator.nk", "signing.nk", "creds/admin.creds", "creds/broker.creds"} {
		if fi, err := os.Stat(filepath.Join(authDir, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", f, fi.Mode(), err)
		}
	}
	account := strings.Fields(string(out)[strings.Index(string(out), "--account A"):])[1]

	listen := freeAddr(t)
	conf := filepath.Join(authDir, "nats-server.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("listen: %s\njetstream: {store_dir: %q}\ninclude plugbus-auth.conf\n", listen, filepath.Join(dir, "js"))), 0o644); err != nil {
		t.Fatal(err)
	}
	startNATSFromConfig(t, conf)
	url := "nats://" + listen
	if nc, err := nats.Connect(url); err == nil || !errors.Is(err, nats.ErrAuthorization) {
		if nc != nil {
			nc.Close()
		}
		t.Fatalf("anonymous connect to the external server: %v, want an authorization error", err)
	}

	b := &bus{bin: bin, natsURL: url, httpAddr: freeAddr(t), creds: filepath.Join(authDir, "creds", "admin.creds")}
	start(t, filepath.Join(bin, "broker"), "--nats-url", url, "--creds", filepath.Join(authDir, "creds", "broker.creds"),
		"--account-signing-key", filepath.Join(authDir, "signing.nk"), "--account", account,
		"--http", b.httpAddr, "--log-format", "json", "--heartbeat-interval", "1s")
	waitHealthy(t, b.httpAddr)

	start(t, filepath.Join(bin, "plugins", "incrementer"), "listen", "--server", url, "--log-format", "json",
		"--creds", b.pluginCreds(t, "incrementer"))
	b.waitActive(t, "incrementer")
	if out := b.mustBusctl(t, "machine", "action", "m1", "increment", "-o", "json"); !strings.Contains(out, `"value": 1`) {
		t.Errorf("increment on the external bus: %s", out)
	}

	// The server enforces the plugin's permissions there too.
	inc := b.pluginCreds(t, "incrementer")
	if err := pubRefused(t, url, inc, wire.InboxPrefix("plugin", "incrementer"), wire.EventSubject(wire.DefaultPrefix, schemas.TypeJobDeployed), nil); err != nil {
		t.Error(err)
	}

	_, errOut, code := b.busctl(t, "plugins", "revoke", "incrementer")
	if code != 1 || !strings.Contains(errOut, "error: unavailable: blocked new credentials for plugin incrementer, but cannot cut off the 2 issued") ||
		!strings.Contains(errOut, "hint: with nsc, for each key: `nsc revocations add-user") {
		t.Errorf("revoke on an external NATS: exit %d\n%s", code, errOut)
	}
	// Hosts cannot get new ones for it until an admin issues them.
	b.mustBusctl(t, "hosts", "creds", "h1", "--plugins", "*", "--out", filepath.Join(dir, "h1.creds"))
	hc := mustDial(t, url, filepath.Join(dir, "h1.creds"), wire.InboxPrefix("host", "h1"))
	if err := forbiddenReply(t, hc, wire.HostAPISubject(wire.DefaultPrefix, schemas.APIHostsPluginCreds, "h1"), schemas.CredsRequest{Name: "incrementer"}); err != nil {
		t.Error(err)
	}
}

// testCA makes a CA and a server certificate for 127.0.0.1, as PEM files
// in dir: ca.pem, server.pem, server-key.pem.
func testCA(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "plugbus test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", srvDER), write("server-key.pem", "EC PRIVATE KEY", keyDER)
}

// TestTLS: the embedded server's client port with TLS, and every client
// (busctl, hostd and the plugins it starts, the nats CLI) verifying it
// with the CA; without the CA, busctl says what to pass.
func TestTLS(t *testing.T) {
	bin := build(t)
	dir := t.TempDir()
	ca, cert, key := testCA(t, dir)
	listen := freeAddr(t)
	b := &bus{bin: bin, natsURL: "tls://" + listen, httpAddr: freeAddr(t), dataDir: filepath.Join(dir, "data")}
	start(t, filepath.Join(bin, "broker"), "--data-dir", b.dataDir, "--listen", listen, "--http", b.httpAddr,
		"--server-tlscert", cert, "--server-tlskey", key, "--log-format", "json")
	waitHealthy(t, b.httpAddr)

	_, errOut, code := b.busctl(t, "plugins", "ls")
	if code != 1 || !strings.Contains(errOut, "certificate signed by unknown authority") || !strings.Contains(errOut, "--tlsca") {
		t.Errorf("busctl without the CA: exit %d\n%s", code, errOut)
	}
	b.mustBusctl(t, "--tlsca", ca, "plugins", "ls")

	// hostd with tls.ca in its config passes the CA on to its plugins.
	hostDir := filepath.Join(dir, "host")
	if err := os.MkdirAll(hostDir, 0o700); err != nil {
		t.Fatal(err)
	}
	b.mustBusctl(t, "--tlsca", ca, "hosts", "creds", "tls-host", "--plugins", "*", "--out", filepath.Join(hostDir, "host.creds"))
	cfg := fmt.Sprintf("host: tls-host\nnats_url: %s\ncreds: host.creds\ntls:\n  ca: %s\nstate_dir: state\nplugins:\n  - binary: %s\n",
		b.natsURL, ca, filepath.Join(bin, "plugins", "incrementer"))
	if err := os.WriteFile(filepath.Join(hostDir, "hostd.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	start(t, filepath.Join(bin, "hostd"), "--config", filepath.Join(hostDir, "hostd.yaml"), "--log-format", "json")
	waitFor(t, "incrementer ACTIVE over TLS", func() bool {
		out, _, code := b.busctl(t, "--tlsca", ca, "plugins", "get", "incrementer", "-o", "json")
		return code == 0 && strings.Contains(out, `"state": "ACTIVE"`)
	})

	out, ok := runNats(t, b.natsURL, "--tlsca", ca, "--creds", filepath.Join(b.dataDir, "creds", "admin.creds"), "req", "plugbus.api.plugins.list", "{}")
	if !ok || !strings.Contains(out, `"name":"incrementer"`) {
		t.Errorf("nats CLI over TLS: %s", out)
	}
}
