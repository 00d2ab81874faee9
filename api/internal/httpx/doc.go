// Package httpx holds the API node's HTTP plumbing: the public error type and the one place that turns
// any error into a status and a public message, strict JSON decoding with field-level validation errors,
// JSON responses, request IDs and list pagination.
package httpx
