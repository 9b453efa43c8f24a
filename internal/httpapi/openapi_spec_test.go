package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"

	"github.com/purserhq/purser/internal/httpapi"
	"github.com/purserhq/purser/internal/spend"
)

// specPath is docs/openapi.yaml, from this package's directory.
var specPath = filepath.Join("..", "..", "docs", "openapi.yaml")

// specURL names the spec inside the schema compiler.
const specURL = "file:///purser/openapi.json"

// methods are the operation keys of an OpenAPI path item.
var methods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// openAPI is docs/openapi.yaml, parsed, with its schemas compiled on
// demand for validating real requests and responses.
type openAPI struct {
	doc map[string]any

	mu       sync.Mutex
	compiler *jsonschema.Compiler
	compiled map[string]*jsonschema.Schema
}

var (
	specOnce   sync.Once
	loadedSpec *openAPI
	specErr    error
)

// loadSpec reads the spec once per test binary.
func loadSpec(t *testing.T) *openAPI {
	t.Helper()
	specOnce.Do(func() { loadedSpec, specErr = readSpec() })
	if specErr != nil {
		t.Fatalf("%s: %v", specPath, specErr)
	}
	return loadedSpec
}

func readSpec() (*openAPI, error) {
	raw, err := os.ReadFile(specPath)
	if err != nil {
		return nil, err
	}
	var y any
	if err := yaml.Unmarshal(raw, &y); err != nil {
		return nil, err
	}
	// Through JSON, so that numbers and maps are what the schema
	// validator expects of a JSON document.
	j, err := json.Marshal(y)
	if err != nil {
		return nil, fmt.Errorf("not representable as JSON: %w", err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		return nil, err
	}
	m, ok := doc.(map[string]any)
	if !ok || m["openapi"] != "3.1.0" {
		return nil, fmt.Errorf("not an OpenAPI 3.1.0 document")
	}
	// The validator's copy is stricter than the spec: an object schema
	// that lists its properties and says nothing of others gets
	// additionalProperties: false, so that a field the server sends but
	// the spec does not describe fails the test. The spec itself leaves
	// answers open to new fields, so that clients generated from it keep
	// working when one is added.
	strict, _ := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	closeObjects(strict)
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource(specURL, strict); err != nil {
		return nil, err
	}
	return &openAPI{doc: m, compiler: c, compiled: map[string]*jsonschema.Schema{}}, nil
}

// closeObjects sets additionalProperties: false on every schema object
// with properties that does not say.
func closeObjects(v any) {
	switch v := v.(type) {
	case map[string]any:
		if props, ok := v["properties"].(map[string]any); ok {
			if _, says := v["additionalProperties"]; !says {
				v["additionalProperties"] = false
			}
			for _, p := range props {
				closeObjects(p)
			}
		}
		for k, c := range v {
			if k != "properties" {
				closeObjects(c)
			}
		}
	case []any:
		for _, c := range v {
			closeObjects(c)
		}
	}
}

// pointer escapes one JSON pointer token.
func pointer(tok string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(tok)
}

// resolve follows a local reference ("#/components/responses/X").
func (o *openAPI) resolve(ref string) (any, error) {
	p, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, fmt.Errorf("reference %q is not local", ref)
	}
	var cur any = o.doc
	for _, tok := range strings.Split(p, "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		m, ok := cur.(map[string]any)
		if !ok || m[tok] == nil {
			return nil, fmt.Errorf("reference %q leads nowhere", ref)
		}
		cur = m[tok]
	}
	return cur, nil
}

// deref returns obj, or what it refers to when it is {$ref}, with the
// pointer of the result.
func (o *openAPI) deref(obj map[string]any, at string) (map[string]any, string, error) {
	ref, ok := obj["$ref"].(string)
	if !ok {
		return obj, at, nil
	}
	v, err := o.resolve(ref)
	if err != nil {
		return nil, "", err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, "", fmt.Errorf("%s is not an object", ref)
	}
	return m, strings.TrimPrefix(ref, "#"), nil
}

// operation returns the operation of method and path (a spec path,
// "/v1/agents/{ref}") and its pointer.
func (o *openAPI) operation(method, path string) (map[string]any, string, error) {
	paths, _ := o.doc["paths"].(map[string]any)
	item, _ := paths[path].(map[string]any)
	op, ok := item[strings.ToLower(method)].(map[string]any)
	if !ok {
		return nil, "", fmt.Errorf("the spec has no operation %s %s", method, path)
	}
	return op, "/paths/" + pointer(path) + "/" + strings.ToLower(method), nil
}

// operations lists "METHOD /path" of every operation in the spec.
func (o *openAPI) operations() []string {
	var out []string
	paths, _ := o.doc["paths"].(map[string]any)
	for p, item := range paths {
		item, _ := item.(map[string]any)
		for _, m := range methods {
			if _, ok := item[m]; ok {
				out = append(out, strings.ToUpper(m)+" "+p)
			}
		}
	}
	sort.Strings(out)
	return out
}

// responseMedia returns the media types the spec declares for an
// operation's status, with each one's schema pointer ("" when the media
// type has no schema); ok is false when the status is not declared.
func (o *openAPI) responseMedia(method, path string, status int) (media map[string]string, ok bool, err error) {
	op, at, err := o.operation(method, path)
	if err != nil {
		return nil, false, err
	}
	responses, _ := op["responses"].(map[string]any)
	r, declared := responses[fmt.Sprint(status)].(map[string]any)
	if !declared {
		return nil, false, nil
	}
	r, at, err = o.deref(r, at+"/responses/"+fmt.Sprint(status))
	if err != nil {
		return nil, false, err
	}
	media = map[string]string{}
	content, _ := r["content"].(map[string]any)
	for mt, v := range content {
		m, _ := v.(map[string]any)
		if _, has := m["schema"]; has {
			media[mt] = at + "/content/" + pointer(mt) + "/schema"
		} else {
			media[mt] = ""
		}
	}
	return media, true, nil
}

// requestSchema returns the pointer of an operation's JSON request body
// schema, "" when it takes no body.
func (o *openAPI) requestSchema(method, path string) (string, error) {
	op, at, err := o.operation(method, path)
	if err != nil {
		return "", err
	}
	rb, ok := op["requestBody"].(map[string]any)
	if !ok {
		return "", nil
	}
	rb, at, err = o.deref(rb, at+"/requestBody")
	if err != nil {
		return "", err
	}
	content, _ := rb["content"].(map[string]any)
	if _, ok := content["*/*"]; ok && len(content) == 1 {
		return "", nil // any body of any type (the proxy's): nothing to hold it to
	}
	if _, ok := content["application/octet-stream"]; ok && len(content) == 1 {
		return "", nil // raw bytes (a co-signing message): nothing to hold them to
	}
	if _, ok := content["application/json"]; !ok {
		return "", fmt.Errorf("%s %s: the request body is not application/json", method, path)
	}
	return at + "/content/application~1json/schema", nil
}

// schema compiles the schema at a pointer of the spec.
func (o *openAPI) schema(ptr string) (*jsonschema.Schema, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if s, ok := o.compiled[ptr]; ok {
		return s, nil
	}
	frag := (&url.URL{Fragment: ptr}).EscapedFragment()
	s, err := o.compiler.Compile(specURL + "#" + frag)
	if err != nil {
		return nil, err
	}
	o.compiled[ptr] = s
	return s, nil
}

// validate checks a JSON document against the schema at ptr.
func (o *openAPI) validate(ptr string, body []byte) error {
	s, err := o.schema(ptr)
	if err != nil {
		return err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("not JSON: %v: %.200s", err, body)
	}
	return s.Validate(v)
}

// validateValue checks a decoded value (a string body) against ptr.
func (o *openAPI) validateValue(ptr string, v any) error {
	s, err := o.schema(ptr)
	if err != nil {
		return err
	}
	return s.Validate(v)
}

// enum returns a component schema's enum and x-enum-descriptions.
func (o *openAPI) enum(t *testing.T, name string) (values, descriptions []string) {
	t.Helper()
	v, err := o.resolve("#/components/schemas/" + name)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := v.(map[string]any)
	for _, e := range asList(m["enum"]) {
		values = append(values, fmt.Sprint(e))
	}
	for _, e := range asList(m["x-enum-descriptions"]) {
		descriptions = append(descriptions, fmt.Sprint(e))
	}
	if len(values) == 0 {
		t.Fatalf("components.schemas.%s has no enum", name)
	}
	if len(descriptions) != len(values) {
		t.Errorf("components.schemas.%s: %d x-enum-descriptions for %d values", name, len(descriptions), len(values))
	}
	return values, descriptions
}

func asList(v any) []any { l, _ := v.([]any); return l }

// anyMethod are the operations that describe a method-less route (the
// proxy, "/v1/proxy/{name}/{path...}", which the mux matches for every
// method): the methods a grant can allow (apiproxy's, and the spec's
// ProxyMethod). Any other method is answered too, refused by the grant
// check (spend_denied), which the operations' responses cover.
var anyMethod = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// routeOperations turns one registered mux pattern into the spec's
// "METHOD /path" operations: a pattern without a method is one operation
// per method of anyMethod; a trailing wildcard "{path...}" is the spec's
// "{path}" (OpenAPI has no multi-segment parameter: the parameter's
// description says it holds slashes).
func routeOperations(pattern string) []string {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		method, path = "", pattern
	}
	if i := strings.LastIndex(path, "{"); i >= 0 && strings.HasSuffix(path, "...}") {
		path = path[:i] + "{" + strings.TrimSuffix(path[i+1:], "...}") + "}"
	}
	if method != "" {
		return []string{method + " " + path}
	}
	out := make([]string, 0, len(anyMethod))
	for _, m := range anyMethod {
		out = append(out, m+" "+path)
	}
	return out
}

// TestOpenAPIRoutes: the spec describes exactly the routes the server
// registers, no more, no fewer, each with an operationId and a summary.
func TestOpenAPIRoutes(t *testing.T) {
	t.Parallel()
	o := loadSpec(t)
	served := map[string]bool{}
	for _, metricsAuth := range []string{"", "owner"} { // /metrics is registered either way
		for _, p := range httpapi.New(httpapi.Config{OwnerToken: "t", MetricsAuth: metricsAuth}).Patterns() {
			if p == "/" {
				continue // the catch-all answers not_found and method_not_allowed
			}
			for _, r := range routeOperations(p) {
				served[r] = true
			}
		}
	}
	// The methods a method-less route is described with are those a
	// grant can name.
	pm, _ := o.resolve("#/components/schemas/ProxyMethod")
	pmm, _ := pm.(map[string]any)
	var got []string
	for _, m := range asList(pmm["enum"]) {
		got = append(got, fmt.Sprint(m))
	}
	if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(anyMethod))) {
		t.Errorf("components.schemas.ProxyMethod is %v; a method-less route is described with %v", got, anyMethod)
	}
	described := map[string]bool{}
	for _, op := range o.operations() {
		described[op] = true
	}
	for r := range served {
		if !described[r] {
			t.Errorf("the server serves %s, which docs/openapi.yaml does not describe", r)
		}
	}
	for r := range described {
		if !served[r] {
			t.Errorf("docs/openapi.yaml describes %s, which the server does not serve", r)
		}
	}
	ids := map[string]string{}
	for _, r := range o.operations() {
		method, path, _ := strings.Cut(r, " ")
		op, _, _ := o.operation(method, path)
		id, _ := op["operationId"].(string)
		if id == "" || op["summary"] == nil {
			t.Errorf("%s: operationId %q, summary %v: both are required", r, id, op["summary"])
		}
		if prev, dup := ids[id]; dup {
			t.Errorf("operationId %q names both %s and %s", id, prev, r)
		}
		ids[id] = r
		responses, _ := op["responses"].(map[string]any)
		if len(responses) == 0 {
			t.Errorf("%s declares no responses", r)
		}
		if _, ok := responses["default"]; ok {
			t.Errorf("%s declares a default response: declare each status, so that the test can hold the server to them", r)
		}
	}
}

// TestOpenAPICodes: Error.code lists exactly the error codes of the
// registry in internal/spend/codes.go, each with its status and meaning;
// SpendReason and BodyReason exactly its reason codes of those kinds.
func TestOpenAPICodes(t *testing.T) {
	t.Parallel()
	o := loadSpec(t)
	codes, descs := o.enum(t, "ErrorCode")
	var want, wantDescs []string
	for _, c := range spend.ErrorCodes {
		want = append(want, c.Code)
		if c.Status != 0 {
			wantDescs = append(wantDescs, fmt.Sprintf("HTTP %d: %s", c.Status, c.Meaning))
		} else {
			wantDescs = append(wantDescs, "never in an API answer: "+c.Meaning)
		}
	}
	compareEnum(t, "ErrorCode", codes, descs, want, wantDescs)

	kinds := map[string][]string{
		"SpendReason": {spend.ReasonKindDeny, spend.ReasonKindApproval, spend.ReasonKindRelease},
		"BodyReason":  {spend.ReasonKindBody},
		// Reasons of the CLI's x402 payer and of purser facilitator, a
		// separate server: never in this API's answers.
		"": {spend.ReasonKindPayment, spend.ReasonKindFacilitator},
	}
	for _, r := range spend.ReasonCodes {
		found := false
		for _, ks := range kinds {
			found = found || slices.Contains(ks, r.Kind)
		}
		if !found {
			t.Errorf("reason kind %q (of %s) is new: decide which schema of docs/openapi.yaml lists it, and add it here", r.Kind, r.Code)
		}
	}
	for name, ks := range kinds {
		if name == "" {
			continue
		}
		values, descs := o.enum(t, name)
		var want, wantDescs []string
		for _, r := range spend.ReasonCodes {
			if slices.Contains(ks, r.Kind) {
				want = append(want, r.Code)
				wantDescs = append(wantDescs, r.Kind+": "+r.Meaning)
			}
		}
		compareEnum(t, name, values, descs, want, wantDescs)
	}
}

// compareEnum compares an enum with the registry's codes in both
// directions, then each description.
func compareEnum(t *testing.T, name string, got, gotDescs, want, wantDescs []string) {
	t.Helper()
	for _, c := range want {
		if !slices.Contains(got, c) {
			t.Errorf("components.schemas.%s.enum lacks %q, which internal/spend/codes.go registers", name, c)
		}
	}
	for _, c := range got {
		if !slices.Contains(want, c) {
			t.Errorf("components.schemas.%s.enum has %q, which internal/spend/codes.go does not register (for this schema)", name, c)
		}
	}
	for i, c := range got {
		j := slices.Index(want, c)
		if j < 0 || i >= len(gotDescs) {
			continue
		}
		if gotDescs[i] != wantDescs[j] {
			t.Errorf("components.schemas.%s: the description of %q is\n\t%q\nbut the registry says\n\t%q", name, c, gotDescs[i], wantDescs[j])
		}
	}
}

// schemaKeywords are the keywords a schema of the spec may use (JSON
// Schema 2020-12 and OpenAPI's additions); x-… extensions besides.
var schemaKeywords = map[string]bool{
	"$ref": true, "$defs": true, "type": true, "format": true, "title": true, "description": true, "default": true,
	"examples": true, "example": true, "deprecated": true, "readOnly": true, "writeOnly": true,
	"enum": true, "const": true, "pattern": true, "minLength": true, "maxLength": true,
	"minimum": true, "maximum": true, "exclusiveMinimum": true, "exclusiveMaximum": true, "multipleOf": true,
	"properties": true, "required": true, "additionalProperties": true, "patternProperties": true,
	"unevaluatedProperties": true, "minProperties": true, "maxProperties": true,
	"items": true, "prefixItems": true, "minItems": true, "maxItems": true, "uniqueItems": true,
	"oneOf": true, "anyOf": true, "allOf": true, "not": true, "if": true, "then": true, "else": true,
	"discriminator": true, "externalDocs": true, "contentMediaType": true, "contentEncoding": true,
}

// TestOpenAPISchemasWellFormed: every schema of the spec uses known
// keywords only (a comma in an unquoted YAML flow mapping, `{description:
// a, b}`, silently makes a keyword "b") and compiles.
func TestOpenAPISchemasWellFormed(t *testing.T) {
	t.Parallel()
	o := loadSpec(t)
	var walk func(v any, at string, schema bool)
	walk = func(v any, at string, schema bool) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				switch {
				case schema && !schemaKeywords[k] && !strings.HasPrefix(k, "x-"):
					t.Errorf("%s: %q is no schema keyword", at, k)
				case schema && (k == "properties" || k == "$defs" || k == "patternProperties"):
					m, _ := c.(map[string]any)
					for name, s := range m {
						walk(s, at+"/"+k+"/"+name, true)
					}
				case schema && (k == "items" || k == "additionalProperties" || k == "not" || k == "if" || k == "then" || k == "else" ||
					k == "oneOf" || k == "anyOf" || k == "allOf" || k == "prefixItems"):
					walk(c, at+"/"+k, true)
				case schema:
				case k == "schema" || k == "x-purser-line-schema":
					walk(c, at+"/"+k, true)
				case k == "schemas" && at == "/components":
					m, _ := c.(map[string]any)
					for name, s := range m {
						walk(s, at+"/schemas/"+name, true)
					}
				default:
					walk(c, at+"/"+k, false)
				}
			}
		case []any:
			for i, c := range v {
				walk(c, fmt.Sprintf("%s/%d", at, i), schema)
			}
		}
	}
	walk(o.doc, "", false)
	schemas, _ := o.doc["components"].(map[string]any)["schemas"].(map[string]any)
	for name := range schemas {
		if _, err := o.schema("/components/schemas/" + name); err != nil {
			t.Errorf("components.schemas.%s: %v", name, err)
		}
	}
}
