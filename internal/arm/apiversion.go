package arm

import (
	"net/http"
	"slices"
	"strings"
)

// APIVersions is a set of accepted api-version values for one resource type.
type APIVersions []string

// Check returns the request's api-version, or the ARM error for a missing or unsupported one.
func (v APIVersions) Check(r *http.Request) (string, *Error) {
	got := r.URL.Query().Get("api-version")
	if got == "" {
		return "", BadRequest("MissingApiVersionParameter",
			"The api-version query parameter (?api-version=) is required for all requests. Supported versions: '%s'.", strings.Join(v, ", "))
	}
	if !slices.Contains(v, got) {
		return "", BadRequest("InvalidApiVersionParameter",
			"The api-version '%s' is invalid. The supported versions are '%s'.", got, strings.Join(v, ", "))
	}
	return got, nil
}
