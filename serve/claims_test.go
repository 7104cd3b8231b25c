package serve

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// unclaimed lists the fields of t (a struct type) at prefix that no claim
// covers: a field is covered by a claim of its own path, or, when claims
// name fields inside it, by covering each of those.
func unclaimed(t reflect.Type, prefix string, cs []claim) []string {
	var out []string
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		path := prefix + f.Name
		own := slices.ContainsFunc(cs, func(c claim) bool { return c.field == path })
		inside := slices.ContainsFunc(cs, func(c claim) bool { return strings.HasPrefix(c.field, path+".") })
		switch {
		case own:
		case inside && f.Type.Kind() == reflect.Struct:
			out = append(out, unclaimed(f.Type, path+".", cs)...)
		default:
			out = append(out, path)
		}
	}
	return out
}

// TestEveryPlanFieldClaimed: every field of Plan is claimed by an owner
// with an effect on reload, so that a new field cannot make a reload
// silently "unchanged"; every claim names a field that exists, and only
// restart-only fields carry a configuration key.
func TestEveryPlanFieldClaimed(t *testing.T) {
	if missing := unclaimed(reflect.TypeFor[Plan](), "", claims); len(missing) > 0 {
		t.Errorf("plan fields no owner claims (add them to claims in claims.go): %v", missing)
	}
	seen := map[string]bool{}
	for _, c := range claims {
		if seen[c.field] {
			t.Errorf("%s is claimed twice", c.field)
		}
		seen[c.field] = true
		typ := reflect.TypeFor[Plan]()
		for name := range strings.SplitSeq(c.field, ".") {
			f, ok := typ.FieldByName(name)
			if !ok {
				t.Errorf("claim %q: no field %s", c.field, name)
				break
			}
			typ = f.Type
		}
		if (c.effect == atRestart) != (c.key != "") || c.owner == "" {
			t.Errorf("claim %+v: a restart-only field needs its configuration key, others none; every claim an owner", c)
		}
	}

	// The check finds a field that nobody claims, at the top and inside a
	// section whose fields are claimed one by one.
	for _, drop := range []string{"ShutdownTimeout", "HTTP.Token", "Process.Library"} {
		cs := slices.DeleteFunc(slices.Clone(claims), func(c claim) bool { return c.field == drop })
		if got := unclaimed(reflect.TypeFor[Plan](), "", cs); !slices.Equal(got, []string{drop}) {
			t.Errorf("without the claim of %s: unclaimed = %v", drop, got)
		}
	}
}

// TestDiffFollowsClaims: a change of any claimed field of the base plan is
// seen by Diff with its claim's effect.
func TestDiffFollowsClaims(t *testing.T) {
	for _, c := range claims {
		if c.effect == ignored || c.effect == perStream {
			continue
		}
		next := basePlan()
		v := fieldAt(reflect.ValueOf(&next).Elem(), c.field)
		if !change(v) {
			t.Logf("%s: no way to change a %s here; skipped", c.field, v.Type())
			continue
		}
		ch := basePlan().Diff(next)
		got := map[effect]bool{reloadModels: ch.Models, canaryInt8: ch.Int8, reopenSinks: ch.Sinks, applySetting: ch.Settings, atRestart: ch.Restart}
		for e, on := range got {
			if on != (e == c.effect) {
				t.Errorf("%s changed: Diff = %+v, want only effect %d", c.field, ch, c.effect)
				break
			}
		}
	}
}

// change sets v to another value of its type; false when it cannot.
func change(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(v.Int() + 7)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(v.Float() + 0.125)
	case reflect.String:
		v.SetString(v.String() + "-changed")
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() && change(v.Field(i)) {
				return true
			}
		}
		return false
	case reflect.Slice:
		if v.Len() == 0 {
			v.Set(reflect.MakeSlice(v.Type(), 1, 1))
			return true
		}
		return change(v.Index(0))
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		if v.Type().Key().Kind() != reflect.String || v.Type().Elem().Kind() != reflect.String {
			return false
		}
		m.SetMapIndex(reflect.ValueOf("changed"), reflect.ValueOf("yes"))
		v.Set(m)
	default:
		return false
	}
	return true
}
