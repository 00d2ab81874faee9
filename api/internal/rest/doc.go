// Package rest is the API node's JSON plumbing for REST handlers: strict request decoding with
// field-level validation errors, JSON responses, list pagination (limit and opaque cursors), the
// request-scoped logger, and WriteError, which logs a server error's cause and writes it through
// internal/apierror, the one error contract that the node and the edge router share.
package rest
