package config

import (
	"fmt"
	"reflect"
	"strings"
	"time"
)

// values calls fn with each value of a numeric key of the range table in
// c ("[]" stands for every list item) and its path with indices
// ("streams[1].fps"). A key under a section the file leaves out
// (model.quantize) or a pointer left nil (provider.tensorrt.dla_core) has
// no value. Keys are matched to fields by their yaml tags.
func (c *Config) values(key string, fn func(path string, v reflect.Value)) {
	walkKey(reflect.ValueOf(c).Elem(), strings.Split(key, "."), "", fn)
}

func walkKey(v reflect.Value, parts []string, path string, fn func(string, reflect.Value)) {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	if len(parts) == 0 {
		fn(path, v)
		return
	}
	name, list := strings.CutSuffix(parts[0], "[]")
	sf, ok := fieldByTag(v.Type(), name)
	if !ok {
		panic(fmt.Sprintf("config: %s has no key %q", v.Type(), name))
	}
	f := v.FieldByIndex(sf.Index)
	if path != "" {
		path += "."
	}
	path += name
	if !list {
		walkKey(f, parts[1:], path, fn)
		return
	}
	for i := range f.Len() {
		walkKey(f.Index(i), parts[1:], fmt.Sprintf("%s[%d]", path, i), fn)
	}
}

// number reads a numeric key's value (a duration in seconds).
func number(v reflect.Value, duration bool) float64 {
	switch {
	case v.CanInt() && duration:
		return time.Duration(v.Int()).Seconds()
	case v.CanInt():
		return float64(v.Int())
	case v.CanFloat():
		return v.Float()
	}
	panic(fmt.Sprintf("config: %s is not a number", v.Type()))
}

// setValue sets a numeric key's value (a duration from seconds).
func setValue(v reflect.Value, x float64, duration bool) {
	switch {
	case v.CanInt() && duration:
		v.SetInt(int64(time.Duration(x * float64(time.Second))))
	case v.CanInt():
		v.SetInt(int64(x))
	case v.CanFloat():
		v.SetFloat(x)
	default:
		panic(fmt.Sprintf("config: %s is not a number", v.Type()))
	}
}

// numericDefaults fills in the declared default of every numeric key the
// file leaves out (the range table's Default; Computed ones are derived
// by applyDefaults).
func (c *Config) numericDefaults() {
	for _, r := range ranges {
		if r.Computed {
			continue
		}
		c.values(r.Key, func(path string, v reflect.Value) {
			if !c.has(path) {
				setValue(v, r.Default, r.Duration)
			}
		})
	}
}

// numbers checks every numeric key's value against its declared range.
func (v *validator) numbers() {
	for _, r := range ranges {
		v.c.values(r.Key, func(path string, x reflect.Value) {
			v.check(path, r, number(x, r.Duration))
		})
	}
}
