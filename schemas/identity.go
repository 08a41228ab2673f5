package schemas

import "time"

// Schema paths of the identity documents.
const (
	APICredsRequest      = "api/v1/creds_request.json"       // CredsRequest
	APIHostCredsRequest  = "api/v1/host_creds_request.json"  // HostCredsRequest
	APICredsResponse     = "api/v1/creds_response.json"      // CredsResponse
	APIRevokeResponse    = "api/v1/revoke_response.json"     // RevokeResponse
	EventIdentityIssued  = "events/identity/v1/issued.json"  // IdentityIssuedData
	EventIdentityRevoked = "events/identity/v1/revoked.json" // IdentityRevokedData
)

// Identity event types.
const (
	TypeIdentityIssued  = "io.plugbus.identity.v1.issued"
	TypeIdentityRevoked = "io.plugbus.identity.v1.revoked"
)

// BucketIdentities holds what the broker issued to each identity (the
// broker's only: no other identity may read it).
const BucketIdentities = "plugbus_identities" // "<role>.<name>" → IdentityRecord

// CredsRequest names a plugin or a host.
type CredsRequest struct {
	Name string `json:"name"`
}

// HostCredsRequest issues a host's credentials and says which plugins
// are placed on it ("*": any).
type HostCredsRequest struct {
	Name    string   `json:"name"`
	Plugins []string `json:"plugins"`
}

// CredsResponse carries new credentials: a .creds file.
type CredsResponse struct {
	Role      string    `json:"role"`
	Name      string    `json:"name,omitempty"`
	Creds     string    `json:"creds"`
	PublicKey string    `json:"public_key"`
	IssuedAt  time.Time `json:"issued_at"`
}

// RevokeResponse says what a revocation cut off.
type RevokeResponse struct {
	Role    string `json:"role"`
	Name    string `json:"name"`
	Revoked int    `json:"revoked"`
}

// IdentityIssuedData is the data of io.plugbus.identity.v1.issued.
type IdentityIssuedData struct {
	Role      string `json:"role"`
	Name      string `json:"name,omitempty"`
	PublicKey string `json:"public_key"`
	By        string `json:"by"`
}

// IdentityRevokedData is the data of io.plugbus.identity.v1.revoked.
type IdentityRevokedData struct {
	Role       string   `json:"role"`
	Name       string   `json:"name"`
	Revoked    int      `json:"revoked"`
	PublicKeys []string `json:"public_keys,omitempty"`
}

// IdentityRecord is what the broker keeps of an identity.
type IdentityRecord struct {
	Role string `json:"role"`
	Name string `json:"name"`
	// Users are the user keys issued to it, oldest first.
	Users []IssuedUser `json:"users,omitempty"`
	// Blocked is set by a revocation: hosts cannot obtain credentials for
	// it until an admin issues new ones.
	Blocked bool `json:"blocked,omitempty"`
	// Plugins, for a host, are the plugins placed on it ("*": any).
	Plugins   []string  `json:"plugins,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// IssuedUser is one set of credentials issued.
type IssuedUser struct {
	PublicKey string    `json:"public_key"`
	IssuedAt  time.Time `json:"issued_at"`
	By        string    `json:"by"`
	Revoked   bool      `json:"revoked,omitempty"`
}

// IdentityKey is the identities bucket key of an identity.
func IdentityKey(role, name string) string {
	if name == "" {
		return role
	}
	return role + "." + name
}
