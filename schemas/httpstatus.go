package schemas

import "net/http"

// HTTPStatus is the HTTP status that answers an error with this code over
// HTTP (the alert intake, the dashboard). Failures a retry may cure are 5xx
// (Alertmanager retries those, not 4xx); a code outside the documented set
// is a bad gateway.
func HTTPStatus(code string) int {
	switch code {
	case CodeBadRequest, CodeInvalidField, CodeMissingParam:
		return http.StatusBadRequest
	case CodeForbidden:
		return http.StatusForbidden
	case CodeNotFound:
		return http.StatusNotFound
	case CodeConflict:
		return http.StatusConflict
	case CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeRejected, CodeUnknownAction, CodeAmbiguousAction:
		return http.StatusUnprocessableEntity
	case CodeTimeout:
		return http.StatusGatewayTimeout
	case CodeNoResponders, CodeUnavailable, CodeNotActive:
		return http.StatusServiceUnavailable
	case CodeInternal:
		return http.StatusInternalServerError
	default:
		return http.StatusBadGateway
	}
}
