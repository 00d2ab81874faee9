package api

import (
	"net/http"

	"github.com/8thdegree/meridian/api/internal/app"
	"github.com/8thdegree/meridian/api/internal/authn"
	"github.com/8thdegree/meridian/api/internal/server"
)

// buildHandler assembles the feature packages' routes and the middleware into the node's handler.
func (n *Node) buildHandler() (http.Handler, error) {
	var routes []app.Route
	auth := &authn.HeaderAuthenticator{Tokens: n.tokens}
	return server.Handler(routes, server.Options{
		Region:        n.cfg.Region,
		Log:           n.log,
		Auth:          auth,
		InternalToken: string(n.cfg.InternalToken),
		Ops:           n.opsHandlers(),
	})
}
