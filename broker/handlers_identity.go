package broker

import (
	"context"
	"slices"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nuid"
	"github.com/plugbus/plugbus/broker/identity"
	"github.com/plugbus/plugbus/internal/logging"
	"github.com/plugbus/plugbus/schemas"
)

// Identities: the broker issues every plugin's and host's credentials and
// keeps, in the identities bucket (readable by the broker only), which
// user keys it issued to whom, so it can revoke them. Admins call
// plugins.creds, plugins.revoke, hosts.creds and hosts.revoke; a host
// calls hosts.plugin_creds.HOST for the plugins placed on it.

func (b *Broker) noAuthority() error {
	return schemas.Errorf(schemas.CodeUnavailable, "", "this bus issues no credentials: the broker runs on an external NATS without the account's signing key (see docs/security.md)")
}

// issue makes new credentials for an identity, records them and publishes
// io.plugbus.identity.v1.issued. change edits the record first (unblock,
// placement).
func (b *Broker) issue(ctx context.Context, id identity.Identity, by string, change func(*schemas.IdentityRecord) error) (*schemas.CredsResponse, error) {
	if b.auth == nil {
		return nil, b.noAuthority()
	}
	c, err := b.auth.Issue(b.cfg.Prefix, id, 0)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	// Each issue is its own operation (new credentials every time).
	_, err = commitRecord(ctx, b, b.st.identities, schemas.IdentityKey(string(id.Role), id.Name), nuid.Next(), func(r *schemas.IdentityRecord, _ bool) ([]*event.Event, time.Duration, error) {
		r.Role, r.Name = string(id.Role), id.Name
		if change != nil {
			if err := change(r); err != nil {
				return nil, 0, err
			}
		}
		r.Users = append(r.Users, schemas.IssuedUser{PublicKey: c.Public, IssuedAt: c.IssuedAt.UTC(), By: by})
		r.UpdatedAt = now
		ev, err := NewEvent(schemas.TypeIdentityIssued, schemas.IdentityIssuedData{Role: string(id.Role), Name: id.Name, PublicKey: c.Public, By: by},
			WithSubject(string(id.Role)+"/"+id.Name))
		return []*event.Event{ev}, 0, err
	})
	if err != nil {
		return nil, err
	}
	b.log.Info().Str("role", string(id.Role)).Str("name", id.Name).Str("by", by).Msg("credentials issued")
	return &schemas.CredsResponse{Role: string(id.Role), Name: id.Name, Creds: string(c.File), PublicKey: c.Public, IssuedAt: c.IssuedAt.UTC()}, nil
}

func (b *Broker) publish(ctx context.Context, eventType string, data any, opts ...EventOption) {
	if _, err := b.publishLater(ctx, eventType, data, opts...); err != nil {
		b.log.Error().Err(err).Str(logging.FieldEventType, eventType).Msg("publish event")
	}
}

// handlePluginsCreds issues a plugin's credentials (and lifts a block a
// revocation set).
func (b *Broker) handlePluginsCreds(ctx context.Context, req *schemas.CredsRequest) (any, error) {
	return b.issue(ctx, identity.Identity{Role: identity.RolePlugin, Name: req.Name}, "admin", func(r *schemas.IdentityRecord) error {
		r.Blocked = false
		return nil
	})
}

// handleHostsCreds issues a host's credentials with the plugins placed on
// it.
func (b *Broker) handleHostsCreds(ctx context.Context, req *schemas.HostCredsRequest) (any, error) {
	return b.issue(ctx, identity.Identity{Role: identity.RoleHost, Name: req.Name}, "admin", func(r *schemas.IdentityRecord) error {
		r.Blocked = false
		r.Plugins = slices.Clone(req.Plugins)
		return nil
	})
}

// handleHostsPluginCreds issues credentials to the host on the subject
// for a plugin placed on it.
func (b *Broker) handleHostsPluginCreds(ctx context.Context, req *schemas.CredsRequest) (any, error) {
	host := callerName(ctx)
	if b.auth == nil {
		return nil, b.noAuthority()
	}
	var h schemas.IdentityRecord
	if _, err := getJSON(ctx, b.st.identities, schemas.IdentityKey(string(identity.RoleHost), host), &h); err != nil || h.Blocked {
		return nil, schemas.Errorf(schemas.CodeForbidden, "", "host %s has no valid host identity: an admin issues one with hosts.creds", host)
	}
	if !slices.Contains(h.Plugins, "*") && !slices.Contains(h.Plugins, req.Name) {
		e := schemas.Errorf(schemas.CodeForbidden, "name", "plugin %s is not placed on host %s (its host identity allows %v)", req.Name, host, h.Plugins)
		e.Details = map[string]any{schemas.DetailPlugin: req.Name}
		return nil, e
	}
	var p schemas.IdentityRecord
	if _, err := getJSON(ctx, b.st.identities, schemas.IdentityKey(string(identity.RolePlugin), req.Name), &p); err == nil && p.Blocked {
		e := schemas.Errorf(schemas.CodeForbidden, "name", "plugin %s's credentials were revoked: only an admin can issue new ones (plugins.creds)", req.Name)
		e.Details = map[string]any{schemas.DetailPlugin: req.Name}
		return nil, e
	}
	return b.issue(ctx, identity.Identity{Role: identity.RolePlugin, Name: req.Name}, "host "+host, nil)
}

func (b *Broker) handlePluginsRevoke(ctx context.Context, req *schemas.CredsRequest) (any, error) {
	return b.revoke(ctx, identity.Identity{Role: identity.RolePlugin, Name: req.Name})
}

func (b *Broker) handleHostsRevoke(ctx context.Context, req *schemas.CredsRequest) (any, error) {
	return b.revoke(ctx, identity.Identity{Role: identity.RoleHost, Name: req.Name})
}

// revoke makes every credential issued to an identity useless, cuts off
// its connections, blocks re-issuing by hosts, and publishes
// io.plugbus.identity.v1.revoked.
func (b *Broker) revoke(ctx context.Context, id identity.Identity) (any, error) {
	if b.auth == nil {
		return nil, b.noAuthority()
	}
	var pubs []string
	_, err := updateJSON(ctx, b.st.identities, schemas.IdentityKey(string(id.Role), id.Name), func(r *schemas.IdentityRecord, exists bool) error {
		if !exists {
			e := schemas.Errorf(schemas.CodeNotFound, "name", "no credentials were ever issued to %s", id)
			e.Details = map[string]any{schemas.DetailKind: string(id.Role), schemas.DetailName: id.Name}
			return e
		}
		pubs = nil
		for i := range r.Users {
			if !r.Users[i].Revoked {
				pubs = append(pubs, r.Users[i].PublicKey)
				// Without the operator the server still takes them.
				r.Users[i].Revoked = b.auth.CanRevoke()
			}
		}
		r.Blocked = true
		r.UpdatedAt = time.Now().UTC()
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !b.auth.CanRevoke() {
		// An external NATS where the broker holds only the account's
		// signing key: revocations live in the account JWT, which the
		// operator signs.
		e := schemas.Errorf(schemas.CodeUnavailable, "", "blocked new credentials for %s, but cannot cut off the %d issued: on an external NATS the broker holds no operator key; "+
			"revoke their user keys (details.public_keys) in the account JWT with the operator's key and push it to the server (see docs/security.md)", id, len(pubs))
		e.Details = map[string]any{schemas.DetailPublicKeys: pubs}
		return nil, e
	}
	if err := b.auth.Revoke(pubs); err != nil {
		return nil, schemas.Errorf(schemas.CodeUnavailable, "", "cannot revoke %s on this bus: %v (see docs/security.md)", id, err)
	}
	b.publish(ctx, schemas.TypeIdentityRevoked, schemas.IdentityRevokedData{Role: string(id.Role), Name: id.Name, Revoked: len(pubs), PublicKeys: pubs},
		WithSubject(string(id.Role)+"/"+id.Name))
	b.log.Warn().Str("role", string(id.Role)).Str("name", id.Name).Int("revoked", len(pubs)).Msg("credentials revoked")
	return schemas.RevokeResponse{Role: string(id.Role), Name: id.Name, Revoked: len(pubs)}, nil
}
