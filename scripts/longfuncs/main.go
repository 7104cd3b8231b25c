// Command longfuncs prints the functions longer than a limit (80 lines by
// default) in the Go packages under the given folders, longest first,
// leaving out tests: the measure of issue 20's restructuring.
//
//	go run ./scripts/longfuncs [-max 80] serve cmd/yedge config plan
package main

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

type fn struct {
	pos   string
	name  string
	lines int
}

func main() {
	limit := flag.Int("max", 80, "longest function allowed, in lines")
	flag.Parse()
	var long []fn
	fset := token.NewFileSet()
	for _, root := range flag.Args() {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			for _, decl := range f.Decls {
				d, ok := decl.(*ast.FuncDecl)
				if !ok || d.Body == nil {
					continue
				}
				start, end := fset.Position(d.Pos()), fset.Position(d.End())
				if n := end.Line - start.Line + 1; n > *limit {
					long = append(long, fn{fmt.Sprintf("%s:%d", path, start.Line), funcName(d), n})
				}
			}
			return nil
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "longfuncs:", err)
			os.Exit(1)
		}
	}
	sort.Slice(long, func(i, j int) bool { return long[i].lines > long[j].lines })
	for _, f := range long {
		fmt.Printf("%4d  %s  %s\n", f.lines, f.name, f.pos)
	}
	fmt.Printf("%d functions over %d lines\n", len(long), *limit)
}

// funcName is the function's name with its receiver type.
func funcName(d *ast.FuncDecl) string {
	if d.Recv == nil || len(d.Recv.List) == 0 {
		return d.Name.Name
	}
	t := d.Recv.List[0].Type
	if s, ok := t.(*ast.StarExpr); ok {
		t = s.X
	}
	if ix, ok := t.(*ast.IndexExpr); ok {
		t = ix.X
	}
	if id, ok := t.(*ast.Ident); ok {
		return id.Name + "." + d.Name.Name
	}
	return d.Name.Name
}
