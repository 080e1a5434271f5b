package repo

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoErrorTextMatched fails when non-test Go code decides anything by the words of an
// error: conditions a caller branches on are sentinels or typed errors (errors.Is,
// errors.As), or a typed field such as instance.Status.Reason. See errorTextMatches for
// what counts.
func TestNoErrorTextMatched(t *testing.T) {
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "testdata" || n == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		for _, pos := range errorTextMatches(f) {
			t.Errorf("%s: error text is matched; branch on a sentinel (errors.Is), a typed error (errors.As) or a typed field instead", fset.Position(pos))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// textMatchers are the functions of strings and bytes that look into text.
var textMatchers = map[string]bool{
	"Contains": true, "ContainsAny": true, "ContainsFunc": true, "ContainsRune": true,
	"HasPrefix": true, "HasSuffix": true, "CutPrefix": true, "CutSuffix": true, "Cut": true,
	"Index": true, "IndexAny": true, "LastIndex": true, "EqualFold": true, "Count": true,
}

// errorTextMatches returns where f matches error text. Error text is x.Error() (a
// method Error called without arguments) or x.Error (a field named Error, as in
// instance.Status). Matching it is:
//
//   - passing it to a text matcher of strings or bytes (strings.Contains, HasPrefix, Index,
//     EqualFold, ...) or to a regexp's Match/MatchString;
//   - comparing it with == or != to anything but the empty string or nil (x.Error != ""
//     asks whether there is an error, not which);
//   - switching on it.
//
// Formatting, logging or storing error text is not matching it.
func errorTextMatches(f *ast.File) []token.Pos {
	var found []token.Pos
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CallExpr:
			sel, ok := n.Fun.(*ast.SelectorExpr)
			if !ok {
				break
			}
			pkg, _ := sel.X.(*ast.Ident)
			matcher := pkg != nil && (pkg.Name == "strings" || pkg.Name == "bytes") && textMatchers[sel.Sel.Name] ||
				sel.Sel.Name == "MatchString" || sel.Sel.Name == "Match"
			if !matcher {
				break
			}
			for _, a := range n.Args {
				if isErrorText(a) {
					found = append(found, n.Pos())
					break
				}
			}
		case *ast.BinaryExpr:
			if n.Op != token.EQL && n.Op != token.NEQ {
				break
			}
			if isErrorText(n.X) && !isEmpty(n.Y) || isErrorText(n.Y) && !isEmpty(n.X) {
				found = append(found, n.Pos())
			}
		case *ast.SwitchStmt:
			if n.Tag != nil && isErrorText(n.Tag) {
				found = append(found, n.Pos())
			}
		}
		return true
	})
	return found
}

// isErrorText reports whether e is x.Error() or x.Error.
func isErrorText(e ast.Expr) bool {
	e = ast.Unparen(e)
	if c, ok := e.(*ast.CallExpr); ok && len(c.Args) == 0 {
		e = c.Fun
	} else if ok {
		return false
	}
	sel, ok := e.(*ast.SelectorExpr)
	return ok && sel.Sel.Name == "Error"
}

// isEmpty reports whether e is the empty string or nil.
func isEmpty(e ast.Expr) bool {
	if id, ok := ast.Unparen(e).(*ast.Ident); ok {
		return id.Name == "nil"
	}
	l, ok := ast.Unparen(e).(*ast.BasicLit)
	return ok && l.Kind == token.STRING && (l.Value == `""` || l.Value == "``")
}

// TestErrorTextMatchesRule pins what errorTextMatches flags and what it lets pass.
func TestErrorTextMatchesRule(t *testing.T) {
	for _, c := range []struct {
		src  string
		want int
	}{
		{`strings.Contains(err.Error(), "not caught up")`, 1},
		{`strings.Contains(s.Error, "not caught up")`, 1},
		{`strings.HasPrefix(msg, e.Error())`, 1},
		{`bytes.Contains(b, []byte(err.Error()))`, 0}, // converted first: not seen, kept simple
		{`err.Error() == "EOF"`, 1},
		{`"EOF" != (err).Error()`, 1},
		{`s.Error == other.Error`, 1},
		{`re.MatchString(err.Error())`, 1},
		{`func() { switch err.Error() { case "x": } }`, 1},
		{`s.Error != ""`, 0},
		{`st.Error == ""`, 0},
		{`st.Error != nil`, 0},
		{`strings.Contains(s.Name, "x")`, 0},
		{`fmt.Sprintf("%s: %s", name, err.Error())`, 0},
		{`strings.TrimSpace(err.Error())`, 0},
		{`e.Error.Code == ""`, 0},
		{`x.Error(1) == "y"`, 0},
		{`errors.Is(err, context.DeadlineExceeded)`, 0},
	} {
		f, err := parser.ParseFile(token.NewFileSet(), "x.go", "package x\nvar _ = "+c.src+"\n", 0)
		if err != nil {
			t.Fatalf("%s: %v", c.src, err)
		}
		if got := len(errorTextMatches(f)); got != c.want {
			t.Errorf("errorTextMatches(%s) = %d matches, want %d", c.src, got, c.want)
		}
	}
}
