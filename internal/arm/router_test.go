package arm

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestRouter(t *testing.T) {
	rt := &Router{}
	var got string
	rt.Handle("GET", "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Sql/managedInstances/{name}", func(w http.ResponseWriter, r *http.Request) {
		got = r.PathValue("sub") + "|" + r.PathValue("rg") + "|" + r.PathValue("name")
	})
	for _, tc := range []struct {
		method, path string
		status       int
		want         string
	}{
		{"GET", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Sql/managedInstances/mi", 200, "s|rg|mi"},
		{"GET", "/SUBSCRIPTIONS/s/resourcegroups/RG/providers/microsoft.sql/MANAGEDINSTANCES/mi", 200, "s|RG|mi"},
		{"GET", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Sql/managedInstances/a%2Fb", 200, "s|rg|a/b"},
		{"PUT", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Sql/managedInstances/mi", 405, ""},
		{"GET", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/x", 404, ""},
	} {
		got = ""
		w := httptest.NewRecorder()
		rt.ServeHTTP(w, httptest.NewRequest(tc.method, tc.path, nil))
		if w.Code != tc.status || got != tc.want {
			t.Errorf("%s %s = %d %q, want %d %q", tc.method, tc.path, w.Code, got, tc.status, tc.want)
		}
	}
}

func TestParseInstanceID(t *testing.T) {
	p, err := ParseInstanceID("/subscriptions/s/resourcegroups/rg/providers/Microsoft.Sql/managedInstances/mi")
	if err != nil || p != (ParsedInstanceID{"s", "rg", "mi"}) {
		t.Errorf("ParseInstanceID = %+v, %v", p, err)
	}
	for _, bad := range []string{"", "mi", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/x", "/subscriptions//resourceGroups/rg/providers/Microsoft.Sql/managedInstances/mi"} {
		if _, err := ParseInstanceID(bad); err == nil {
			t.Errorf("ParseInstanceID(%q) succeeded", bad)
		}
	}
}
