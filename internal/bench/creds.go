package bench

import (
	"path/filepath"
	"sync"

	"github.com/nats-io/nats.go"
)

// The bus runs with identities on (an embedded broker refuses anonymous
// connections), so every benchmark connection, raw or through plugbus,
// uses the broker's own credentials: the same permissions (all) and the
// same auth cost on both sides of every ratio.
var (
	credsMu  sync.Mutex
	credsFor = map[string]string{} // server URL → credentials file
)

// brokerCreds is where an embedded broker with data dir dir keeps its own
// credentials.
func brokerCreds(dir string) string { return filepath.Join(dir, "auth", "broker.creds") }

func setCreds(url, file string) {
	credsMu.Lock()
	credsFor[url] = file
	credsMu.Unlock()
}

// authOpts returns the connect options of url's credentials, if any.
func authOpts(url string) []nats.Option {
	credsMu.Lock()
	defer credsMu.Unlock()
	if f := credsFor[url]; f != "" {
		return []nats.Option{nats.UserCredentials(f)}
	}
	return nil
}

// dial connects to url with its credentials.
func dial(url string, opts ...nats.Option) (*nats.Conn, error) {
	return nats.Connect(url, append(authOpts(url), opts...)...)
}
