// Package web is the HTTP plumbing shared by the registrar, EST and MASA
// edges, free of protocol knowledge: server construction with fixed timeouts
// and header limits (reliability D1), the middleware chain (request ID →
// panic recovery → request-log event → handler), body limits and media-type
// checks, TLS peer extraction, and the one place where error kinds become
// status codes.
//
// Handlers have the shape func(http.ResponseWriter, *http.Request) error; an
// error they return is written once by the edge's ErrorWriter and recorded in
// the request's log event, which is emitted once when the request ends.
package web
