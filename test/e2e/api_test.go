package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestAuthentication(t *testing.T) {
	f := startFog(t, "")
	list := "/subscriptions/" + sub + "/providers/Microsoft.Sql/managedInstances"
	for _, tc := range []struct {
		name, auth, code string
	}{
		{"missing", "", "AuthenticationFailed"},
		{"wrong token", "Bearer fog_not-a-real-token", "InvalidAuthenticationToken"},
		{"not bearer", "Basic " + f.info.Token, "InvalidAuthenticationToken"},
		{"empty bearer", "Bearer ", "InvalidAuthenticationToken"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.callWith("GET", list, nil, tc.auth)
			if r.Status != http.StatusUnauthorized || r.code() != tc.code {
				t.Fatalf("GET with %q = %d %s, want 401 %s", tc.name, r.Status, r.Body, tc.code)
			}
			if r.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if strings.Contains(string(r.Body), f.info.Token) {
				t.Error("error body echoes the token")
			}
		})
	}
	// Unauthenticated requests learn nothing about paths either.
	if r := f.callWith("GET", "/no/such/path", nil, ""); r.Status != http.StatusUnauthorized {
		t.Errorf("unknown path without token = %d, want 401", r.Status)
	}
	if r := f.call("GET", list, nil); r.Status != http.StatusOK {
		t.Fatalf("GET with the admin token = %d %s", r.Status, r.Body)
	}
}

func TestAPIVersions(t *testing.T) {
	f := startFog(t, "")
	list := "/subscriptions/" + sub + "/providers/Microsoft.Sql/managedInstances"
	for _, v := range []string{"2021-05-01-preview", "2021-11-01", "2023-08-01", "2025-01-01"} {
		if r := f.call("GET", list+"?api-version="+v, nil); r.Status != http.StatusOK {
			t.Errorf("api-version %s = %d %s, want 200", v, r.Status, r.Body)
		}
	}
	for _, tc := range []struct{ query, code string }{
		{"?api-version=2019-01-01", "InvalidApiVersionParameter"},
		{"?api-version=", "MissingApiVersionParameter"},
		{"?api-version=latest", "InvalidApiVersionParameter"},
	} {
		r := f.call("GET", list+tc.query, nil)
		if r.Status != http.StatusBadRequest || r.code() != tc.code {
			t.Errorf("GET %s = %d %s, want 400 %s", tc.query, r.Status, r.Body, tc.code)
		}
		if r.Header.Get("x-ms-error-code") != tc.code {
			t.Errorf("x-ms-error-code = %q, want %s", r.Header.Get("x-ms-error-code"), tc.code)
		}
	}
	if r := f.call("GET", "/subscriptions/"+sub+"/providers/Microsoft.Web/sites", nil); r.Status != http.StatusNotFound {
		t.Errorf("unknown resource type = %d, want 404", r.Status)
	}
	if r := f.call("PATCH", miPath("rg", "x"), "{}"); r.Status != http.StatusMethodNotAllowed {
		t.Errorf("PATCH = %d, want 405", r.Status)
	}
}

// TestLongRunningOperation checks the protocol azcore and the az CLI poll: 202 with absolute
// Azure-AsyncOperation and Location URLs at subscription scope, Retry-After, a status resource,
// a Location that answers 202 then the resource, and the final GET.
func TestLongRunningOperation(t *testing.T) {
	f := startFog(t, "")
	r := f.call("PUT", miPath("rg-lro", "lro1"), miBody("East US", nil))
	if r.Status != http.StatusAccepted {
		t.Fatalf("PUT = %d %s, want 202", r.Status, r.Body)
	}
	if op := r.json(t)["operation"]; op != "UpsertManagedServer" {
		t.Errorf("202 body operation = %v, want UpsertManagedServer", op)
	}
	async, loc := r.Header.Get("Azure-AsyncOperation"), r.Header.Get("Location")
	for _, u := range []string{async, loc} {
		p, err := url.Parse(u)
		if err != nil || !p.IsAbs() || p.Scheme != "https" {
			t.Fatalf("polling URL %q is not absolute https", u)
		}
		if !strings.HasPrefix(p.Path, "/subscriptions/"+sub+"/providers/Microsoft.Sql/locations/eastus/") {
			t.Errorf("polling URL %q is not at subscription scope in the instance's region", u)
		}
		if p.Query().Get("api-version") != apiVer {
			t.Errorf("polling URL %q lacks the request's api-version", u)
		}
	}
	if r.Header.Get("Retry-After") == "" {
		t.Error("202 without Retry-After")
	}
	if r.Header.Get("x-ms-request-id") == "" {
		t.Error("response without x-ms-request-id")
	}
	// While it runs, the instance is visible as Creating and the Location answers 202.
	if g := f.call("GET", miPath("rg-lro", "lro1"), nil); g.Status != http.StatusOK {
		t.Fatalf("GET during create = %d", g.Status)
	} else if ps := props(g.json(t))["provisioningState"]; ps != "Creating" && ps != "Succeeded" {
		t.Errorf("provisioningState during create = %v", ps)
	}
	st := f.wait(r)
	if st["status"] != "Succeeded" || st["startTime"] == nil || st["endTime"] == nil || st["name"] == nil {
		t.Fatalf("final status = %v, want Succeeded with name, startTime, endTime", st)
	}
	res := f.call("GET", loc, nil)
	if res.Status != http.StatusOK {
		t.Fatalf("GET Location after success = %d %s, want 200", res.Status, res.Body)
	}
	body := res.json(t)
	if body["name"] != "lro1" || props(body)["provisioningState"] != "Succeeded" || props(body)["state"] != "Ready" {
		t.Errorf("Location result = %v", body)
	}
	// The final GET on the resource URL, as azcore does for PUT.
	final := f.call("GET", miPath("rg-lro", "lro1"), nil).json(t)
	if final["id"] != "/subscriptions/"+sub+"/resourceGroups/rg-lro/providers/Microsoft.Sql/managedInstances/lro1" ||
		final["type"] != "Microsoft.Sql/managedInstances" || final["location"] != "eastus" {
		t.Errorf("GET = %v", final)
	}
	if _, leaked := props(final)["administratorLoginPassword"]; leaked {
		t.Error("GET echoes administratorLoginPassword")
	}

	// Delete: 202, Location ends in 204, then 404; a second delete is 204.
	d := f.call("DELETE", miPath("rg-lro", "lro1"), nil)
	f.mustSucceed(d)
	if res := f.call("GET", d.Header.Get("Location"), nil); res.Status != http.StatusNoContent {
		t.Errorf("delete Location after success = %d, want 204", res.Status)
	}
	if g := f.call("GET", miPath("rg-lro", "lro1"), nil); g.Status != http.StatusNotFound || g.code() != "ResourceNotFound" {
		t.Errorf("GET after delete = %d %s, want 404 ResourceNotFound", g.Status, g.Body)
	}
	if d2 := f.call("DELETE", miPath("rg-lro", "lro1"), nil); d2.Status != http.StatusNoContent {
		t.Errorf("second DELETE = %d, want 204", d2.Status)
	}
	if o := f.call("GET", "/subscriptions/"+sub+"/providers/Microsoft.Sql/locations/eastus/managedInstanceAzureAsyncOperation/nope", nil); o.Status != http.StatusNotFound || o.code() != "OperationIdNotFound" {
		t.Errorf("unknown operation = %d %s, want 404 OperationIdNotFound", o.Status, o.Body)
	}
}

func TestInstanceValidation(t *testing.T) {
	f := startFog(t, "")
	existing := f.createInstance("rg-v", "v-existing", "eastus", nil)
	for _, tc := range []struct {
		name, rg, mi string
		body         any
		status       int
		code         string
	}{
		{"malformed JSON", "rg-v", "v1", `{"location": "eastus",`, 400, "InvalidRequestContent"},
		{"empty body", "rg-v", "v1", "", 400, "InvalidRequestContent"},
		{"wrong type", "rg-v", "v1", `{"location":"eastus","properties":{"vCores":"eight"}}`, 400, "InvalidRequestContent"},
		{"uppercase name", "rg-v", "Bad", miBody("eastus", nil), 400, "InvalidResourceName"},
		{"trailing hyphen", "rg-v", "bad-", miBody("eastus", nil), 400, "InvalidResourceName"},
		{"long name", "rg-v", strings.Repeat("a", 64), miBody("eastus", nil), 400, "InvalidResourceName"},
		{"bad resource group", "rg.", "v1", miBody("eastus", nil), 400, "InvalidResourceGroup"},
		{"no location", "rg-v", "v1", miBody("", nil), 400, "LocationRequired"},
		{"unknown region", "rg-v", "v1", miBody("mars", nil), 400, "LocationNotAvailableForResourceType"},
		{"no login", "rg-v", "v1", miBody("eastus", map[string]any{"administratorLogin": nil}), 400, "MissingAdministratorLogin"},
		{"reserved login", "rg-v", "v1", miBody("eastus", map[string]any{"administratorLogin": "postgres"}), 400, "InvalidLoginName"},
		{"bad login", "rg-v", "v1", miBody("eastus", map[string]any{"administratorLogin": "a b"}), 400, "InvalidLoginName"},
		{"no password", "rg-v", "v1", miBody("eastus", map[string]any{"administratorLoginPassword": nil}), 400, "MissingAdministratorLoginPassword"},
		{"short password", "rg-v", "v1", miBody("eastus", map[string]any{"administratorLoginPassword": "Sh0rt!"}), 400, "InvalidPassword"},
		{"two classes", "rg-v", "v1", miBody("eastus", map[string]any{"administratorLoginPassword": "alllowercaseletters123"}), 400, "InvalidPassword"},
		{"password has login", "rg-v", "v1", miBody("eastus", map[string]any{"administratorLoginPassword": "Fogadmin-Is-My-Pass1"}), 400, "InvalidPassword"},
		{"vCores", "rg-v", "v1", miBody("eastus", map[string]any{"vCores": 6}), 400, "InvalidVCores"},
		{"storage step", "rg-v", "v1", miBody("eastus", map[string]any{"storageSizeInGB": 100}), 400, "InvalidStorageSizeInGB"},
		{"storage max", "rg-v", "v1", miBody("eastus", map[string]any{"storageSizeInGB": 16416}), 400, "InvalidStorageSizeInGB"},
		{"storage min", "rg-v", "v1", miBody("eastus", map[string]any{"storageSizeInGB": 0}), 400, "InvalidStorageSizeInGB"},
		{"sku name", "rg-v", "v1", map[string]any{"location": "eastus", "sku": map[string]any{"name": "XX_Gen9"}, "properties": miBody("", nil)["properties"]}, 400, "InvalidSku"},
		{"sku tier", "rg-v", "v1", map[string]any{"location": "eastus", "sku": map[string]any{"tier": "Hyperscale"}, "properties": miBody("", nil)["properties"]}, 400, "InvalidSku"},
		{"sku disagree", "rg-v", "v1", map[string]any{"location": "eastus", "sku": map[string]any{"name": "GP_Gen5", "tier": "BusinessCritical"}, "properties": miBody("", nil)["properties"]}, 400, "InvalidSku"},
		{"SQL collation", "rg-v", "v1", miBody("eastus", map[string]any{"collation": "SQL_Latin1_General_CP1_CI_AS"}), 400, "InvalidCollation"},
		{"unknown locale", "rg-v", "v1", miBody("eastus", map[string]any{"collation": "xx_XX.UTF-8"}), 400, "InvalidCollation"},
		{"timezone", "rg-v", "v1", miBody("eastus", map[string]any{"timezoneId": "Mars/Olympus"}), 400, "InvalidTimezone"},
		{"license", "rg-v", "v1", miBody("eastus", map[string]any{"licenseType": "Free"}), 400, "InvalidLicenseType"},
		{"database format", "rg-v", "v1", miBody("eastus", map[string]any{"databaseFormat": "SQLServer2008"}), 400, "InvalidDatabaseFormat"},
		{"backup storage redundancy", "rg-v", "v1", miBody("eastus", map[string]any{"backupStorageRedundancy": "GRS"}), 400, "InvalidBackupStorageRedundancy"},
		{"dnsZone set", "rg-v", "v1", miBody("eastus", map[string]any{"dnsZone": "abc"}), 400, "InvalidParameterValue"},
		{"dnsZonePartner bad id", "rg-v", "v1", miBody("eastus", map[string]any{"dnsZonePartner": "not-an-id"}), 400, "InvalidDnsZonePartner"},
		{"dnsZonePartner missing", "rg-v", "v1", miBody("eastus", map[string]any{"dnsZonePartner": miPath("rg-v", "nope")}), 400, "InvalidDnsZonePartner"},
		{"duplicate name", "rg-other", "v-existing", miBody("eastus", nil), 409, "NameAlreadyExists"},
		{"change collation", "rg-v", "v-existing", miBody("eastus", map[string]any{"collation": "C"}), 400, "PropertyChangeNotSupported"},
		{"change location", "rg-v", "v-existing", miBody("westus", nil), 400, "PropertyChangeNotSupported"},
		{"change login", "rg-v", "v-existing", miBody("eastus", map[string]any{"administratorLogin": "other"}), 400, "PropertyChangeNotSupported"},
		{"change timezone", "rg-v", "v-existing", miBody("eastus", map[string]any{"timezoneId": "Europe/Berlin"}), 400, "PropertyChangeNotSupported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.call("PUT", miPath(tc.rg, tc.mi), tc.body)
			if r.Status != tc.status || r.code() != tc.code {
				t.Fatalf("PUT = %d %s, want %d %s", r.Status, r.Body, tc.status, tc.code)
			}
			var e struct{ Error struct{ Message string } }
			if m := r.json(t); m["error"] == nil {
				t.Fatal("no error object")
			}
			_ = e
			if strings.Contains(string(r.Body), password) {
				t.Error("error echoes the password")
			}
		})
	}
	// Nothing was created by the failures.
	list := f.call("GET", "/subscriptions/"+sub+"/providers/Microsoft.Sql/managedInstances", nil).json(t)
	if n := len(list["value"].([]any)); n != 1 {
		t.Errorf("instances after bad requests = %d, want 1", n)
	}
	if props(existing)["collation"] != "C.UTF-8" {
		t.Errorf("default collation = %v", props(existing)["collation"])
	}
}

func TestConcurrentOperationRejected(t *testing.T) {
	f := startFog(t, "")
	r := f.call("PUT", miPath("rg-c", "busy1"), miBody("westus", nil))
	if r.Status != http.StatusAccepted {
		t.Fatalf("PUT = %d", r.Status)
	}
	second := f.call("PUT", miPath("rg-c", "busy1"), miBody("westus", map[string]any{"vCores": 16}))
	del := f.call("DELETE", miPath("rg-c", "busy1"), nil)
	f.mustSucceed(r)
	if second.Status != http.StatusConflict || second.code() != "ConflictingServerOperation" {
		t.Errorf("PUT during create = %d %s, want 409 ConflictingServerOperation", second.Status, second.Body)
	}
	if del.Status != http.StatusConflict || del.code() != "ConflictingServerOperation" {
		t.Errorf("DELETE during create = %d %s, want 409 ConflictingServerOperation", del.Status, del.Body)
	}
}
