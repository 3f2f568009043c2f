package main

// Helpers for reading resource.PropertyMap values: secrets are unwrapped when
// a value is used, and a normalised "plain" form is used to compare inputs.

import (
	"fmt"
	"reflect"
	"sort"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

// unwrap strips secret (and known output) wrappers from a value.
func unwrap(v resource.PropertyValue) resource.PropertyValue {
	for {
		switch {
		case v.IsSecret():
			v = v.SecretValue().Element
		case v.IsOutput() && v.OutputValue().Known:
			v = v.OutputValue().Element
		default:
			return v
		}
	}
}

func get(m resource.PropertyMap, key string) (resource.PropertyValue, bool) {
	if m == nil {
		return resource.PropertyValue{}, false
	}
	v, ok := m[resource.PropertyKey(key)]
	if !ok {
		return resource.PropertyValue{}, false
	}
	v = unwrap(v)
	if v.IsNull() {
		return v, false
	}
	return v, true
}

// getString returns a string input, "" when it is missing, null or not a string.
func getString(m resource.PropertyMap, key string) string {
	if v, ok := get(m, key); ok && v.IsString() {
		return v.StringValue()
	}
	return ""
}

// getNumber returns a number input, or def when it is missing or not a number.
func getNumber(m resource.PropertyMap, key string, def float64) float64 {
	if v, ok := get(m, key); ok && v.IsNumber() {
		return v.NumberValue()
	}
	return def
}

// getBool returns a bool input, or def when it is missing or not a bool.
func getBool(m resource.PropertyMap, key string, def bool) bool {
	if v, ok := get(m, key); ok && v.IsBool() {
		return v.BoolValue()
	}
	return def
}

// getObject returns an object input, nil when it is missing.
func getObject(m resource.PropertyMap, key string) resource.PropertyMap {
	if v, ok := get(m, key); ok && v.IsObject() {
		return v.ObjectValue()
	}
	return nil
}

// getStringMap returns a map of strings (e.g. environment); non-string values
// are formatted with their plain representation.
func getStringMap(m resource.PropertyMap, key string) map[string]string {
	obj := getObject(m, key)
	if obj == nil {
		return nil
	}
	out := make(map[string]string, len(obj))
	for k, v := range obj {
		v = unwrap(v)
		switch {
		case v.IsNull():
			continue
		case v.IsString():
			out[string(k)] = v.StringValue()
		default:
			p, _ := plain(v)
			out[string(k)] = fmt.Sprint(p)
		}
	}
	return out
}

// getStringArray returns an array of strings (e.g. interpreter).
func getStringArray(m resource.PropertyMap, key string) []string {
	v, ok := get(m, key)
	if !ok || !v.IsArray() {
		return nil
	}
	var out []string
	for _, e := range v.ArrayValue() {
		e = unwrap(e)
		if e.IsString() {
			out = append(out, e.StringValue())
		}
	}
	return out
}

// sortedEnv returns KEY=VALUE pairs in a stable order.
func sortedEnv(env map[string]string) []string {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, k+"="+env[k])
	}
	return out
}

type unknownMarker struct{}

// plain converts a value to plain Go data for comparison: secrets by their
// content, nulls as nil. known is false when the value contains an unknown
// (computed) part anywhere.
func plain(v resource.PropertyValue) (any, bool) {
	v = unwrap(v)
	switch {
	case v.IsNull():
		return nil, true
	case v.IsComputed():
		return unknownMarker{}, false
	case v.IsOutput():
		return unknownMarker{}, false // unknown output (known ones were unwrapped)
	case v.IsString():
		return v.StringValue(), true
	case v.IsNumber():
		return v.NumberValue(), true
	case v.IsBool():
		return v.BoolValue(), true
	case v.IsArray():
		arr := v.ArrayValue()
		out := make([]any, len(arr))
		known := true
		for i, e := range arr {
			p, k := plain(e)
			out[i] = p
			known = known && k
		}
		return out, known
	case v.IsObject():
		obj := v.ObjectValue()
		out := make(map[string]any, len(obj))
		known := true
		for k, e := range obj {
			if unwrap(e).IsNull() {
				continue // a null member is the same as a missing one
			}
			p, kn := plain(e)
			out[string(k)] = p
			known = known && kn
		}
		return out, known
	case v.IsResourceReference():
		ref := v.ResourceReferenceValue()
		id := ""
		if ref.ID.HasValue() {
			p, k := plain(ref.ID)
			if !k {
				return unknownMarker{}, false
			}
			id = fmt.Sprint(p)
		}
		return fmt.Sprintf("ref:%s:%s", ref.URN, id), true
	default:
		// assets and archives: compare by their textual form
		return fmt.Sprintf("%v", v.V), true
	}
}

// sameValue reports whether two (possibly missing) values are equal, treating
// any unknown part as a change.
func sameValue(a, b resource.PropertyValue, aok, bok bool) bool {
	if !aok {
		a = resource.NewNullProperty()
	}
	if !bok {
		b = resource.NewNullProperty()
	}
	pa, ka := plain(a)
	pb, kb := plain(b)
	if !ka || !kb {
		return false
	}
	return reflect.DeepEqual(pa, pb)
}
