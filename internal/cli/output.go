package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"unicode"

	jmespath "github.com/jmespath-community/go-jmespath"
	"sigs.k8s.io/yaml"
)

// outputFormats are az's --output values.
var outputFormats = []string{"json", "jsonc", "table", "tsv", "yaml", "yamlc", "none"}

func validOutput(o string) bool {
	for _, f := range outputFormats {
		if o == f {
			return true
		}
	}
	return false
}

// render applies --query (JMESPath, as az) to v and writes it in the --output format.
func (g *globals) render(v any) error {
	if g.query != "" {
		q, err := jmespath.Compile(g.query)
		if err != nil {
			return usageErr("--query", "invalid JMESPath query %q: %v", g.query, err)
		}
		if v, err = q.Search(v); err != nil {
			return usageErr("--query", "%v", err)
		}
	}
	switch g.output {
	case "none":
		return nil
	case "yaml", "yamlc":
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		y, err := yaml.JSONToYAML(b)
		if err != nil {
			return err
		}
		_, err = g.io.Out.Write(y)
		return err
	case "tsv":
		return writeTSV(g.io.Out, v)
	case "table":
		return writeTable(g.io.Out, v)
	}
	// json, jsonc. Connection strings and ids hold '&', '<' and '>': printed as they are.
	enc := json.NewEncoder(g.io.Out)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func scalar(v any) (string, bool) {
	switch x := v.(type) {
	case nil:
		return "", true
	case string:
		return x, true
	case bool:
		return fmt.Sprint(x), true
	case float64:
		b, _ := json.Marshal(x)
		return string(b), true
	}
	return "", false
}

// columns are the scalar keys of a row, az's way: name, resourceGroup and location first,
// then the rest in order.
func columns(rows []map[string]any) []string {
	seen := map[string]bool{}
	var rest []string
	for _, r := range rows {
		for k, v := range r {
			if _, ok := scalar(v); ok && !seen[k] {
				seen[k] = true
				rest = append(rest, k)
			}
		}
	}
	sort.Strings(rest)
	var out []string
	for _, k := range []string{"name", "resourceGroup", "location"} {
		if seen[k] {
			out = append(out, k)
		}
	}
	for _, k := range rest {
		if k != "name" && k != "resourceGroup" && k != "location" {
			out = append(out, k)
		}
	}
	return out
}

func rowsOf(v any) ([]map[string]any, []any, bool) {
	switch x := v.(type) {
	case []any:
		var rows []map[string]any
		for _, e := range x {
			m, ok := e.(map[string]any)
			if !ok {
				return nil, x, false
			}
			rows = append(rows, m)
		}
		return rows, nil, true
	case map[string]any:
		return []map[string]any{x}, nil, true
	}
	return nil, []any{v}, false
}

// writeTSV writes az's tsv: one line per row, the scalar values tab-separated, no header.
func writeTSV(w io.Writer, v any) error {
	rows, list, ok := rowsOf(v)
	var b bytes.Buffer
	if !ok {
		for _, e := range list {
			if s, ok := scalar(e); ok {
				b.WriteString(s + "\n")
			} else if sub, _, ok := rowsOf(e); ok {
				for _, r := range sub {
					writeRow(&b, r, columns(sub), "\t")
				}
			}
		}
	} else {
		cols := columns(rows)
		for _, r := range rows {
			writeRow(&b, r, cols, "\t")
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}

func writeRow(b *bytes.Buffer, r map[string]any, cols []string, sep string) {
	vals := make([]string, len(cols))
	for i, c := range cols {
		vals[i], _ = scalar(r[c])
	}
	b.WriteString(strings.Join(vals, sep) + "\n")
}

// header turns a key into az's column title: resourceGroup becomes ResourceGroup.
func header(k string) string {
	r := []rune(k)
	if len(r) > 0 {
		r[0] = unicode.ToUpper(r[0])
	}
	return string(r)
}

// writeTable writes az's table: a header, a dashed rule, the rows, scalar columns only.
func writeTable(w io.Writer, v any) error {
	rows, list, ok := rowsOf(v)
	if !ok {
		rows = nil
		for _, e := range list {
			s, _ := scalar(e)
			rows = append(rows, map[string]any{"result": s})
		}
	}
	cols := columns(rows)
	if len(cols) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	var hs, rule []string
	for _, c := range cols {
		hs = append(hs, header(c))
		rule = append(rule, strings.Repeat("-", max(len(c), 3)))
	}
	fmt.Fprintln(tw, strings.Join(hs, "\t"))
	fmt.Fprintln(tw, strings.Join(rule, "\t"))
	for _, r := range rows {
		vals := make([]string, len(cols))
		for i, c := range cols {
			vals[i], _ = scalar(r[c])
		}
		fmt.Fprintln(tw, strings.Join(vals, "\t"))
	}
	return tw.Flush()
}
