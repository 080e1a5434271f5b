package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// TestConsole drives the web console in a real browser (Debian's Chromium, through the
// DevTools protocol) against a real `fog up`: a page without a session goes to sign-in, a
// wrong token is refused, then the how-to's portal steps: two instances (the second with the
// first as DNS zone partner), a group created from the primary's page with a secondary picker
// that offers only instances passing the prerequisites, seeding to CATCH_UP, a planned
// failover with the roles swapping on the live page, a forced failover after typing the
// group's name, and deletes. A cross-site POST without the CSRF token is refused and changes
// nothing. With FOG_CONSOLE_SCREENSHOTS=DIR it writes the main pages there as PNG (docs/).
func TestConsole(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (apt-get install chromium)")
	}
	dir := t.TempDir()
	p := startFogProcess(t, dir, addressBase())
	base := p.client.APIURL
	shots := os.Getenv("FOG_CONSOLE_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}

	// Chromium trusts the API's certificate by its public key alone (not every certificate).
	conn, err := tls.Dial("tcp", strings.TrimPrefix(base, "https://"), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	spki := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].RawSubjectPublicKeyInfo)
	conn.Close()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox,
		chromedp.Flag("ignore-certificate-errors-spki-list", base64.StdEncoding.EncodeToString(spki[:])),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 900))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	if err := chromedp.Do(bctx); err != nil { // starts the browser, on a context without a deadline
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(bctx, 6*time.Minute)
	defer cancel()
	page := func() string {
		body, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
		return tail(body, 40)
	}
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v\npage:\n%s", what, err, page())
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("read %s: %v\npage:\n%s", sel, err, page())
		}
		return s
	}
	location := func() string {
		l, _ := chromedp.Run(ctx, chromedp.Location())
		return l
	}
	// waitFor evaluates js until it is true; a page that navigates or swaps meanwhile is
	// evaluated again.
	waitFor := func(what, js string) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Minute)
		var last error
		for time.Now().Before(deadline) {
			ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!("+js+")"))
			if err == nil && ok {
				return
			}
			last = err
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("%s: never true (%v)\npage:\n%s", what, last, page())
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(shots, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// finish waits on an operation page until the operation ends, and continues.
	finish := func(what string) {
		t.Helper()
		run(what, chromedp.WaitVisible(chromedp.CSS("#continue")))
		if s := text(".op-status"); !strings.HasPrefix(s, "Succeeded") {
			t.Fatalf("%s: operation %q: %s", what, s, text("#op"))
		}
		run(what+": continue", chromedp.Click(chromedp.CSS("#continue")), chromedp.WaitReady(chromedp.CSS("main")))
	}

	// Without a session: to sign-in. A wrong token: refused there.
	run("open", chromedp.Navigate(base+"/console/instances"), chromedp.WaitVisible(chromedp.CSS("#token")))
	if l := location(); !strings.Contains(l, "/console/signin?next=") {
		t.Fatalf("without a session the console is at %s, want the sign-in page", l)
	}
	run("wrong token", chromedp.SendKeys(chromedp.CSS("#token"), "fog.wrong.token"), chromedp.Submit(chromedp.CSS("#token")), chromedp.WaitVisible(chromedp.CSS(".error")))
	if e := text(".error"); !strings.Contains(e, "InvalidAuthenticationToken") {
		t.Errorf("a wrong token: %q", e)
	}
	shot("console-signin.png")
	run("sign in", chromedp.SetValue(chromedp.CSS("#token"), p.client.Token), chromedp.Submit(chromedp.CSS("#token")), chromedp.WaitVisible(chromedp.CSS("a.button")))
	if l := location(); !strings.HasSuffix(l, "/console/instances") {
		t.Fatalf("after sign-in: %s", l)
	}
	if who := text(".who"); who != "Signed in as admin" {
		t.Errorf("header says %q", who)
	}

	// The session cookie is HttpOnly, Secure and SameSite=Strict.
	cookies, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{})
	if err != nil {
		t.Fatal(err)
	}
	var session *network.Cookie
	for _, c := range cookies.Cookies {
		if c.Name == "fog_session" {
			session = c
		}
	}
	if session == nil || !session.HTTPOnly || !session.Secure || session.SameSite != network.CookieSameSiteStrict {
		t.Fatalf("session cookie %+v", session)
	}

	const rg, pw = "rg-console", "Str0ng-Password-123!"
	createInstance := func(name, region, partner string) {
		t.Helper()
		actions := []chromedp.Action[chromedp.Void]{chromedp.Navigate(base + "/console/instances/new"), chromedp.WaitVisible(chromedp.CSS("#name")),
			chromedp.SetValue(chromedp.CSS("#name"), name), chromedp.SetValue(chromedp.CSS("#resourceGroup"), rg),
			chromedp.SetValue(chromedp.CSS("#location"), region), chromedp.SetValue(chromedp.CSS("#password"), pw)}
		if partner != "" {
			actions = append(actions, chromedp.SetValue(chromedp.CSS("#dnsZonePartner"), partner))
		}
		if name == "cona" {
			actions = append(actions, chromedp.Func(func(context.Context, *chromedp.Target) error { shot("console-create-instance.png"); return nil }))
		}
		run("create "+name, append(actions, chromedp.Submit(chromedp.CSS("#name")))...)
		finish("create " + name)
	}
	// A bad field: the API's error code and message, on the form, nothing created.
	run("bad instance", chromedp.Navigate(base+"/console/instances/new"), chromedp.WaitVisible(chromedp.CSS("#name")),
		chromedp.SetValue(chromedp.CSS("#name"), "conbad"), chromedp.SetValue(chromedp.CSS("#password"), "short-Passw0rd!!"),
		chromedp.SetValue(chromedp.CSS("#storage"), "33"), chromedp.Submit(chromedp.CSS("#name")), chromedp.WaitVisible(chromedp.CSS(".error")))
	if e := text(".error"); !strings.Contains(e, "InvalidStorageSize") && !strings.Contains(e, "storage") {
		t.Errorf("storage 33 GB: %q", e)
	}

	createInstance("cona", "eastus", "")
	primaryID := "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/" + rg + "/providers/Microsoft.Sql/managedInstances/cona"
	createInstance("conb", "westus", primaryID)
	createInstance("conc", "westus", "") // not in cona's DNS zone: no secondary for it
	run("instances", chromedp.Navigate(base+"/console/instances"), chromedp.WaitVisible(chromedp.CSS("table")))
	shot("console-instances.png")

	// The group, from the primary's page: the picker offers conb and not conc, and says why.
	run("instance page", chromedp.Navigate(base+"/console/instances/"+rg+"/cona"), chromedp.WaitVisible(chromedp.CSS(`a[href^="/console/groups/new"]`)),
		chromedp.Click(chromedp.CSS(`a[href^="/console/groups/new"]`)), chromedp.WaitVisible(chromedp.CSS("#partner")))
	options := text("#partner")
	if !strings.Contains(options, "conb") || strings.Contains(options, "conc") || strings.Contains(options, "cona") {
		t.Errorf("secondary picker offers %q; want conb only", options)
	}
	if why, _ := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(".ineligible"))); !strings.Contains(why, "conc (westus): not in the primary's DNS zone") {
		t.Errorf("ineligible list: %q", why)
	}
	run("group form", chromedp.SetValue(chromedp.CSS("#name"), "fgcon"))
	shot("console-create-group.png")
	run("create group", chromedp.Submit(chromedp.CSS("#name")), chromedp.WaitVisible(chromedp.CSS(".op-status")))
	finish("create group")
	waitFor("CATCH_UP", `[...document.querySelectorAll("tr.side .repl-state")].some(e => e.innerText.includes("CATCH_UP"))`)
	roleOf := func(inst string) string {
		t.Helper()
		r, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(`tr.side[data-instance="`+inst+`"]`), "data-role"))
		if err != nil {
			t.Fatalf("role of %s: %v", inst, err)
		}
		return r.Value
	}
	if roleOf("cona") != "Primary" || roleOf("conb") != "Secondary" {
		t.Fatalf("roles after create: cona %s, conb %s", roleOf("cona"), roleOf("conb"))
	}
	shot("console-group.png")

	// Planned failover: the roles swap on the live page.
	run("planned failover", chromedp.Click(chromedp.CSS("#planned-failover")), chromedp.WaitVisible(chromedp.CSS(".op-status")))
	finish("planned failover")
	waitFor("conb primary", `document.querySelector('tr.side[data-instance="conb"]')?.dataset.role === "Primary" && document.querySelector('tr.side[data-instance="cona"]')?.dataset.role === "Secondary"`)

	// Forced failover: the group's name must be typed.
	run("forced, wrong name", chromedp.SetValue(chromedp.CSS("#confirm-force"), "not-it"), chromedp.Click(chromedp.CSS("#forced-failover")), chromedp.WaitVisible(chromedp.CSS(".error")))
	if e := text(".error"); !strings.Contains(e, "ConfirmationMismatch") {
		t.Errorf("forced failover with a wrong name: %q", e)
	}
	if roleOf("conb") != "Primary" {
		t.Fatal("a refused forced failover changed the roles")
	}
	run("forced failover", chromedp.SetValue(chromedp.CSS("#confirm-force"), "fgcon"), chromedp.Click(chromedp.CSS("#forced-failover")), chromedp.WaitVisible(chromedp.CSS(".op-status")))
	finish("forced failover")
	waitFor("cona primary again", `document.querySelector('tr.side[data-instance="cona"]')?.dataset.role === "Primary"`)
	waitFor("the forced failover's report", `document.body.innerText.includes("transactions lost")`)
	shot("console-group-after-forced.png")

	// A cross-site POST with the session cookie but without the CSRF token, or from another
	// origin, is refused, and the instance is still there.
	hc := httpClient(t, p.client.CACert)
	post := func(origin, csrf string) int {
		form := url.Values{"confirm": {"conc"}}
		if csrf != "" {
			form.Set("csrf", csrf)
		}
		req, _ := http.NewRequest("POST", base+"/console/instances/"+rg+"/conc/delete", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", origin)
		req.AddCookie(&http.Cookie{Name: session.Name, Value: session.Value})
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	run("conc's page", chromedp.Navigate(base+"/console/instances/"+rg+"/conc"), chromedp.WaitVisible(chromedp.CSS("#confirm-delete")))
	csrf, err := chromedp.Run(ctx, chromedp.Value(chromedp.CSS(`input[name="csrf"]`)))
	if err != nil || csrf == "" {
		t.Fatalf("csrf field: %q %v", csrf, err)
	}
	if code := post("https://evil.example", ""); code != http.StatusForbidden {
		t.Errorf("cross-site POST without the CSRF token: %d, want 403", code)
	}
	if code := post("https://evil.example", csrf); code != http.StatusForbidden {
		t.Errorf("POST from another origin with the token: %d, want 403", code)
	}
	f := p.asFog(t, dir)
	if r := f.call("GET", miPath(rg, "conc"), nil); r.Status != http.StatusOK {
		t.Errorf("after the refused POSTs the instance answers %d", r.Status)
	}

	// Deletes, with typed names.
	run("delete group", chromedp.Navigate(base+"/console/groups"), chromedp.WaitVisible(chromedp.CSS("table")),
		chromedp.Click(chromedp.CSS(`a[href*="/fgcon"]`)), chromedp.WaitVisible(chromedp.CSS("#confirm-delete")),
		chromedp.SetValue(chromedp.CSS("#confirm-delete"), "fgcon"), chromedp.Submit(chromedp.CSS("#confirm-delete")), chromedp.WaitVisible(chromedp.CSS(".op-status")))
	finish("delete group")
	for _, name := range []string{"conc", "conb", "cona"} {
		run("delete "+name, chromedp.Navigate(base+"/console/instances/"+rg+"/"+name), chromedp.WaitVisible(chromedp.CSS("#confirm-delete")),
			chromedp.SetValue(chromedp.CSS("#confirm-delete"), name), chromedp.Submit(chromedp.CSS("#confirm-delete")), chromedp.WaitVisible(chromedp.CSS(".op-status")))
		finish("delete " + name)
	}
	if r := f.call("GET", miPath(rg, "cona"), nil); r.Status != http.StatusNotFound {
		t.Errorf("cona after delete: %d", r.Status)
	}

	// Signed out, the pages go back to sign-in.
	run("sign out", chromedp.Navigate(base+"/console/instances"), chromedp.WaitVisible(chromedp.CSS(".signout button")),
		chromedp.Click(chromedp.CSS(".signout button")), chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.Navigate(base+"/console/groups"), chromedp.WaitVisible(chromedp.CSS("#token")))
}
