// Package mtls is the channel between Meridian's processes: mutual TLS for router→node and node→node
// calls, with a certificate per process from a private CA. It loads the CA bundle, the certificate and
// its key from files (so that any PKI that writes files plugs in: Vault agent, cert-manager, the local
// cluster's own CA), reloads them when the files change, builds the server and client tls.Config, and
// names the peer of a connection from its certificate.
//
// # Identities
//
// A process's identity is the one URI SAN of its certificate, in the SPIFFE form:
//
//	spiffe://meridian/router/<region>        an edge router of region
//	spiffe://meridian/node/<region>/<id>     an API node of region, <id> its node ID
//
// Identity is what the node's access rules read (api/internal/server): internal routes accept only
// node identities. Names and IP addresses in the certificate are not used for authorisation; the
// client checks the chain and the identity, not a host name, because nodes are dialled at the
// addresses Consul holds.
//
// # Reloading
//
// Source polls the three files' size and modification time (os.Stat) at most once per
// Options.ReloadInterval, when a handshake needs the material: no goroutine, no watcher. Polling is
// chosen over inotify (fsnotify) because the usual way of replacing mounted secrets, Kubernetes' swap
// of a "..data" symlink and Vault agent's rename, is seen by stat on the path without watching the
// right directory, and it works the same on every file system. A change that does not parse (a
// certificate written before its key) keeps the material in force and is retried at the next poll.
package mtls

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// TrustDomain is the SPIFFE trust domain of Meridian's identities.
const TrustDomain = "meridian"

// Role is the kind of process an identity names.
type Role string

// The roles.
const (
	RoleRouter Role = "router"
	RoleNode   Role = "node"
)

// Identity is a process's identity: a router of a region, or a node (with its ID) of a region.
type Identity struct {
	Role   Role
	Region string
	// ID is the node's ID (nodes only).
	ID string
}

// Router is the identity of an edge router of region.
func Router(region string) Identity { return Identity{Role: RoleRouter, Region: region} }

// Node is the identity of the API node id of region.
func Node(region, id string) Identity { return Identity{Role: RoleNode, Region: region, ID: id} }

var segment = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// Validate checks the role and that region and ID are path segments (lower-case letters, digits,
// '.', '_' and '-').
func (i Identity) Validate() error {
	if !segment.MatchString(i.Region) {
		return fmt.Errorf("mtls: region %q is not a valid identity segment", i.Region)
	}
	switch i.Role {
	case RoleRouter:
		if i.ID != "" {
			return errors.New("mtls: a router identity has no ID")
		}
	case RoleNode:
		if !segment.MatchString(i.ID) {
			return fmt.Errorf("mtls: node ID %q is not a valid identity segment", i.ID)
		}
	default:
		return fmt.Errorf("mtls: unknown role %q", i.Role)
	}
	return nil
}

// URI is the identity as the certificate's URI SAN.
func (i Identity) URI() *url.URL {
	p := "/" + string(i.Role) + "/" + i.Region
	if i.ID != "" {
		p += "/" + i.ID
	}
	return &url.URL{Scheme: "spiffe", Host: TrustDomain, Path: p}
}

func (i Identity) String() string { return i.URI().String() }

// IsNode reports whether i is a node, of any region.
func (i Identity) IsNode() bool { return i.Role == RoleNode }

// ParseURI reads an identity from its URI.
func ParseURI(u *url.URL) (Identity, error) {
	if u.Scheme != "spiffe" || u.Host != TrustDomain || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return Identity{}, fmt.Errorf("mtls: %q is not a %s identity", u.String(), TrustDomain)
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	var id Identity
	switch {
	case len(parts) == 2 && parts[0] == string(RoleRouter):
		id = Router(parts[1])
	case len(parts) == 3 && parts[0] == string(RoleNode):
		id = Node(parts[1], parts[2])
	default:
		return Identity{}, fmt.Errorf("mtls: %q names neither a router nor a node", u.String())
	}
	if err := id.Validate(); err != nil {
		return Identity{}, err
	}
	return id, nil
}

// IdentityOf reads the identity of cert: its one URI SAN of the trust domain.
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	var found []Identity
	for _, u := range cert.URIs {
		if u.Scheme != "spiffe" {
			continue
		}
		id, err := ParseURI(u)
		if err != nil {
			return Identity{}, err
		}
		found = append(found, id)
	}
	switch len(found) {
	case 0:
		return Identity{}, errors.New("mtls: the certificate has no spiffe://" + TrustDomain + " URI SAN")
	case 1:
		return found[0], nil
	}
	return Identity{}, errors.New("mtls: the certificate has more than one spiffe URI SAN")
}

// FromRequest is the verified identity of the peer that sent r, when r came over mutual TLS.
func FromRequest(r *http.Request) (Identity, bool) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 || len(r.TLS.VerifiedChains) == 0 {
		return Identity{}, false
	}
	id, err := IdentityOf(r.TLS.PeerCertificates[0])
	return id, err == nil
}
