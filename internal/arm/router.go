package arm

import (
	"net/http"
	"net/url"
	"strings"
)

// Router matches ARM paths. ARM treats the literal segments of a path ("resourceGroups",
// "Microsoft.Sql") case-insensitively and clients do send them in other cases, which the
// standard library's ServeMux would not match. Wildcards are {name} segments; handlers read
// them with r.PathValue.
type Router struct {
	routes []route
}

type route struct {
	method  string
	segs    []string
	handler http.HandlerFunc
}

// Handle registers h for method and pattern.
func (rt *Router) Handle(method, pattern string, h http.HandlerFunc) {
	rt.routes = append(rt.routes, route{method: method, segs: split(pattern), handler: h})
}

func split(p string) []string { return strings.Split(strings.Trim(p, "/"), "/") }

func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Split the escaped path so that an encoded "/" inside a name stays inside its segment.
	segs := split(r.URL.EscapedPath())
	pathMatched := false
	for _, ro := range rt.routes {
		vals, ok := ro.match(segs)
		if !ok {
			continue
		}
		pathMatched = true
		if ro.method != r.Method {
			continue
		}
		for k, v := range vals {
			r.SetPathValue(k, v)
		}
		ro.handler(w, r)
		return
	}
	if pathMatched {
		WriteError(w, Errorf(http.StatusMethodNotAllowed, "MethodNotAllowed",
			"The HTTP method '%s' is not supported for '%s'.", r.Method, r.URL.Path))
		return
	}
	WriteError(w, Errorf(http.StatusNotFound, "InvalidResourceType",
		"No resource type is served at '%s'. Fog serves Microsoft.Sql managedInstances and their databases.", r.URL.Path))
}

func (ro route) match(segs []string) (map[string]string, bool) {
	if len(segs) != len(ro.segs) {
		return nil, false
	}
	var vals map[string]string
	for i, p := range ro.segs {
		if strings.HasPrefix(p, "{") && strings.HasSuffix(p, "}") {
			if segs[i] == "" {
				return nil, false
			}
			if vals == nil {
				vals = map[string]string{}
			}
			v, err := url.PathUnescape(segs[i])
			if err != nil {
				return nil, false
			}
			vals[p[1:len(p)-1]] = v
			continue
		}
		if !strings.EqualFold(p, segs[i]) {
			return nil, false
		}
	}
	return vals, true
}
