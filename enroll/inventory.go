package enroll

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Inventory is an Ansible inventory, read as Ansible reads it (its ini and
// yaml inventory plugins): hosts, groups, child groups, host and group
// variables. Enrollment uses the connection variables; the others are kept
// only so that precedence works out as in Ansible.
type Inventory struct {
	Path   string
	hosts  map[string]*invHost
	order  []string // host names as first seen
	groups map[string]*invGroup
}

type invHost struct {
	name string
	vars map[string]string
}

type invGroup struct {
	name     string
	hosts    []string
	children []string
	vars     map[string]string
}

// InventoryHost is one host to enroll, with Ansible's connection variables.
type InventoryHost struct {
	Name    string // the inventory hostname: the worker's name
	Address string // ansible_host, or the name
	Port    int    // ansible_port; 0: not set
	User    string // ansible_user; "": not set
	KeyFile string // ansible_ssh_private_key_file; "": not set
}

// ReadInventory reads an Ansible inventory file: YAML when its name ends in
// .yml, .yaml or .json (as Ansible's yaml plugin decides), INI otherwise.
func ReadInventory(path string) (*Inventory, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the inventory: %w", err)
	}
	inv := &Inventory{Path: path, hosts: map[string]*invHost{}, groups: map[string]*invGroup{}}
	inv.group("all")
	inv.group("ungrouped")
	switch filepath.Ext(path) {
	case ".yml", ".yaml", ".json":
		err = inv.parseYAML(data)
	default:
		err = inv.parseINI(data)
	}
	if err != nil {
		return nil, fmt.Errorf("inventory %s: %w", path, err)
	}
	// As in Ansible, every group is a child of all, and a host in no
	// group but all is in ungrouped.
	for name := range inv.groups {
		if name != "all" && !inv.isChild(name) {
			inv.groups["all"].children = appendNew(inv.groups["all"].children, name)
		}
	}
	for _, h := range inv.order {
		if len(inv.groupsOf(h)) == 1 {
			inv.groups["ungrouped"].hosts = appendNew(inv.groups["ungrouped"].hosts, h)
		}
	}
	return inv, nil
}

func (inv *Inventory) group(name string) *invGroup {
	g, ok := inv.groups[name]
	if !ok {
		g = &invGroup{name: name, vars: map[string]string{}}
		inv.groups[name] = g
	}
	return g
}

func (inv *Inventory) host(name string) *invHost {
	h, ok := inv.hosts[name]
	if !ok {
		h = &invHost{name: name, vars: map[string]string{}}
		inv.hosts[name] = h
		inv.order = append(inv.order, name)
	}
	return h
}

func (inv *Inventory) isChild(name string) bool {
	for _, g := range inv.groups {
		if slices.Contains(g.children, name) {
			return true
		}
	}
	return false
}

func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// addHosts adds the hosts a pattern names ("web[01:03]:2222") to group.
func (inv *Inventory) addHosts(group, pattern string, vars map[string]string) error {
	names, port, err := expandHostPattern(pattern)
	if err != nil {
		return err
	}
	g := inv.group(group)
	for _, name := range names {
		h := inv.host(name)
		if port != "" {
			h.vars["ansible_port"] = port
		}
		for k, v := range vars {
			h.vars[k] = v
		}
		// ungrouped is worked out once all is read.
		if group != "ungrouped" {
			g.hosts = appendNew(g.hosts, name)
		}
	}
	return nil
}

var (
	iniSection   = regexp.MustCompile(`^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$`)
	iniGroupName = regexp.MustCompile(`^([^:\]\s]+)\s*(?:#.*)?$`)
)

// parseINI follows Ansible's ini plugin: lines before any section are
// ungrouped hosts; [g] holds hosts, [g:vars] variables, [g:children] groups.
func (inv *Inventory) parseINI(data []byte) error {
	group, state := "ungrouped", "hosts"
	type pending struct {
		line    int
		parents []string
	}
	undeclared := map[string]*pending{}
	declared := map[string]bool{"all": true, "ungrouped": true}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if m := iniSection.FindStringSubmatch(line); m != nil {
			group, state = m[1], m[2]
			if state == "" {
				state = "hosts"
			}
			if state != "hosts" && state != "vars" && state != "children" {
				return fmt.Errorf("line %d: section [%s:%s] has unknown type %q: use [%s], [%s:vars] or [%s:children]", n, group, state, state, group, group, group)
			}
			inv.group(group)
			if state != "vars" {
				declared[group] = true
			}
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			return fmt.Errorf("line %d: %q is not a section: a section is [GROUP], [GROUP:vars] or [GROUP:children], without spaces", n, line)
		}
		switch state {
		case "hosts":
			tokens, err := shellWords(line)
			if err != nil {
				return fmt.Errorf("line %d: %w", n, err)
			}
			vars := map[string]string{}
			for _, t := range tokens[1:] {
				k, v, ok := strings.Cut(t, "=")
				if !ok {
					return fmt.Errorf("line %d: %q is not a KEY=VALUE host variable", n, t)
				}
				vars[k] = literal(v)
			}
			if err := inv.addHosts(group, tokens[0], vars); err != nil {
				return fmt.Errorf("line %d: %w", n, err)
			}
		case "vars":
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				return fmt.Errorf("line %d: %q in [%s:vars] is not KEY=VALUE", n, line, group)
			}
			inv.group(group).vars[strings.TrimSpace(k)] = literal(strings.TrimSpace(v))
		case "children":
			m := iniGroupName.FindStringSubmatch(line)
			if m == nil {
				return fmt.Errorf("line %d: %q in [%s:children] is not a group name", n, line, group)
			}
			g := inv.group(group)
			g.children = appendNew(g.children, m[1])
			if !declared[m[1]] && undeclared[m[1]] == nil {
				undeclared[m[1]] = &pending{line: n, parents: []string{group}}
			}
		}
	}
	for name, p := range undeclared {
		if !declared[name] {
			return fmt.Errorf("line %d: [%s:children] names group %s, which is declared nowhere: add a [%s] section", p.line, p.parents[0], name, name)
		}
	}
	return sc.Err()
}

// shellWords splits a host line as Python's shlex does for Ansible: quotes
// group, and an unquoted # starts a comment.
func shellWords(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote byte
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else if c == '\\' && quote == '"' && i+1 < len(line) {
				i++
				cur.WriteByte(line[i])
			} else {
				cur.WriteByte(c)
			}
		case c == '\'' || c == '"':
			quote, inWord = c, true
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
			inWord = true
		case c == '#' && !inWord:
			i = len(line)
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("%q has an unclosed %c quote", line, quote)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// literal reads a value as Ansible's ast.literal_eval does, for the scalars
// a connection variable can be: a quoted string loses its quotes, a trailing
// comment is dropped, anything else stays as written.
func literal(v string) string {
	if len(v) >= 2 && (v[0] == '\'' || v[0] == '"') {
		if end := strings.IndexByte(v[1:], v[0]); end >= 0 {
			rest := strings.TrimSpace(v[end+2:])
			if rest == "" || rest[0] == '#' {
				return v[1 : end+1]
			}
		}
		return v
	}
	if i := strings.Index(v, "#"); i >= 0 {
		if value := strings.TrimSpace(v[:i]); isPythonLiteral(value) {
			return value
		}
	}
	return v
}

// isPythonLiteral is true for the numbers and constants literal_eval
// accepts without quotes.
func isPythonLiteral(s string) bool {
	if s == "True" || s == "False" || s == "None" {
		return true
	}
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

var hostRange = regexp.MustCompile(`^(.*?)\[([0-9a-zA-Z]+):([0-9a-zA-Z]+)(?::([0-9]+))?\](.*)$`)

// expandHostPattern expands Ansible's host ranges ("db-[a:c]", "web[01:10]")
// and splits off a port ("host:2222", "[::1]:2222").
func expandHostPattern(pattern string) (names []string, port string, err error) {
	host := pattern
	switch {
	case strings.HasPrefix(host, "[") && strings.Contains(host, "]:"):
		i := strings.LastIndex(host, "]:")
		host, port = host[1:i], host[i+2:]
	case strings.Count(host, ":") == 1 && !hostRange.MatchString(host):
		host, port, _ = strings.Cut(host, ":")
	case strings.Count(host, ":") == 2 && hostRange.MatchString(host) && !strings.HasSuffix(host, "]"):
		i := strings.LastIndex(host, ":")
		host, port = host[:i], host[i+1:]
	}
	if port != "" {
		if _, err := strconv.Atoi(port); err != nil {
			return nil, "", fmt.Errorf("host %q: port %q is not a number", pattern, port)
		}
	}
	if host == "" {
		return nil, "", fmt.Errorf("host %q has no name", pattern)
	}
	m := hostRange.FindStringSubmatch(host)
	if m == nil {
		return []string{host}, port, nil
	}
	prefix, from, to, step, suffix := m[1], m[2], m[3], m[4], m[5]
	stride := 1
	if step != "" {
		stride, _ = strconv.Atoi(step)
	}
	var items []string
	if a, err := strconv.Atoi(from); err == nil {
		b, err := strconv.Atoi(to)
		if err != nil || b < a || stride < 1 {
			return nil, "", fmt.Errorf("host range %q: [%s:%s] does not count up", pattern, from, to)
		}
		width := 0
		if len(from) > 1 && from[0] == '0' {
			width = len(from)
		}
		for i := a; i <= b; i += stride {
			items = append(items, fmt.Sprintf("%0*d", width, i))
		}
	} else {
		if len(from) != 1 || len(to) != 1 || to[0] < from[0] || stride < 1 {
			return nil, "", fmt.Errorf("host range %q: [%s:%s] is not a range of letters or numbers", pattern, from, to)
		}
		for c := from[0]; c <= to[0]; c += byte(stride) {
			items = append(items, string(c))
		}
	}
	for _, item := range items {
		more, _, err := expandHostPattern(prefix + item + suffix)
		if err != nil {
			return nil, "", err
		}
		names = append(names, more...)
	}
	return names, port, nil
}

// parseYAML follows Ansible's yaml plugin: top-level keys are groups, each
// with hosts, vars and children.
func (inv *Inventory) parseYAML(data []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return err
	}
	if len(doc.Content) == 0 {
		return fmt.Errorf("it is empty: an inventory starts with the group all")
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: an inventory is a mapping of groups (all: {hosts: ..., children: ...})", top.Line)
	}
	if top.Kind == yaml.MappingNode {
		for i := 0; i < len(top.Content); i += 2 {
			if top.Content[i].Value == "plugin" {
				return fmt.Errorf("it configures an inventory plugin (plugin: %s): enroll reads inventory files, not plugins; export one with ansible-inventory --list --yaml", top.Content[i+1].Value)
			}
		}
	}
	for i := 0; i < len(top.Content); i += 2 {
		if err := inv.yamlGroup(top.Content[i].Value, top.Content[i+1]); err != nil {
			return err
		}
	}
	return nil
}

func (inv *Inventory) yamlGroup(name string, node *yaml.Node) error {
	if node.Kind == yaml.ScalarNode && node.Tag == "!!null" {
		inv.group(name)
		return nil
	}
	if node.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: group %s is not a mapping of hosts, vars and children", node.Line, name)
	}
	g := inv.group(name)
	for i := 0; i < len(node.Content); i += 2 {
		key, value := node.Content[i].Value, node.Content[i+1]
		entries, err := yamlEntries(name, key, value)
		if err != nil {
			return err
		}
		switch key {
		case "vars":
			for _, e := range entries {
				g.vars[e.key] = yamlScalar(e.value)
			}
		case "children":
			for _, e := range entries {
				g.children = appendNew(g.children, e.key)
				if err := inv.yamlGroup(e.key, e.value); err != nil {
					return err
				}
			}
		case "hosts":
			for _, e := range entries {
				vars := map[string]string{}
				if e.value.Kind == yaml.MappingNode {
					for j := 0; j < len(e.value.Content); j += 2 {
						vars[e.value.Content[j].Value] = yamlScalar(e.value.Content[j+1])
					}
				}
				if err := inv.addHosts(name, e.key, vars); err != nil {
					return fmt.Errorf("line %d: %w", e.value.Line, err)
				}
			}
		}
		// Ansible skips other keys with a warning; so does this, silently.
	}
	return nil
}

type yamlEntry struct {
	key   string
	value *yaml.Node
}

// yamlEntries lists a section's entries; as in Ansible, a plain string
// ("hosts: test5") is one entry.
func yamlEntries(group, section string, node *yaml.Node) ([]yamlEntry, error) {
	null := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null"}
	switch {
	case node.Kind == yaml.ScalarNode && node.Tag == "!!null":
		return nil, nil
	case node.Kind == yaml.ScalarNode && node.Tag == "!!str":
		return []yamlEntry{{node.Value, null}}, nil
	case node.Kind == yaml.MappingNode:
		var out []yamlEntry
		for i := 0; i < len(node.Content); i += 2 {
			out = append(out, yamlEntry{node.Content[i].Value, node.Content[i+1]})
		}
		return out, nil
	case section == "hosts" || section == "vars" || section == "children":
		return nil, fmt.Errorf("line %d: %s of group %s must be a mapping", node.Line, section, group)
	}
	return nil, nil
}

// yamlScalar is a variable's value as a string; structured values, which
// enrollment never reads, are kept as their YAML.
func yamlScalar(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		return n.Value
	}
	out, _ := yaml.Marshal(n)
	return strings.TrimSpace(string(out))
}

// groupsOf lists the groups host belongs to, directly or through child
// groups, with their depth below all.
func (inv *Inventory) groupsOf(host string) map[string]int {
	out := map[string]int{}
	onPath := map[string]bool{} // a group that is its own descendant is not followed again
	var walk func(g string, depth int)
	walk = func(g string, depth int) {
		if d, seen := out[g]; (seen && d >= depth) || onPath[g] {
			return
		}
		onPath[g] = true
		defer delete(onPath, g)
		grp := inv.groups[g]
		member := slices.Contains(grp.hosts, host)
		for _, c := range grp.children {
			walk(c, depth+1)
			if _, in := out[c]; in {
				member = true
			}
		}
		if member || g == "all" {
			out[g] = depth
		}
	}
	walk("all", 0)
	return out
}

// Vars are host's variables, with Ansible's precedence: all, then groups
// from the shallowest to the deepest (by name within a depth), then the
// host's own.
func (inv *Inventory) Vars(host string) map[string]string {
	depths := inv.groupsOf(host)
	groups := make([]string, 0, len(depths))
	for g := range depths {
		groups = append(groups, g)
	}
	sort.Slice(groups, func(i, j int) bool {
		if depths[groups[i]] != depths[groups[j]] {
			return depths[groups[i]] < depths[groups[j]]
		}
		return groups[i] < groups[j]
	})
	vars := map[string]string{}
	for _, g := range groups {
		for k, v := range inv.groups[g].vars {
			vars[k] = v
		}
	}
	for k, v := range inv.hosts[host].vars {
		vars[k] = v
	}
	return vars
}

// Groups lists the inventory's groups, sorted.
func (inv *Inventory) Groups() []string {
	var out []string
	for g := range inv.groups {
		out = append(out, g)
	}
	sort.Strings(out)
	return out
}

// Select returns the hosts that patterns name: group names or host names,
// all hosts when there are none. Each host comes once, in inventory order.
func (inv *Inventory) Select(patterns []string) ([]InventoryHost, error) {
	if len(patterns) == 0 {
		patterns = []string{"all"}
	}
	chosen := map[string]bool{}
	for _, p := range patterns {
		switch {
		case inv.groups[p] != nil:
			for _, h := range inv.order {
				if _, in := inv.groupsOf(h)[p]; in {
					chosen[h] = true
				}
			}
		case inv.hosts[p] != nil:
			chosen[p] = true
		default:
			return nil, fmt.Errorf("%q is neither a group nor a host of the inventory %s: its groups are %s", p, inv.Path, strings.Join(inv.Groups(), ", "))
		}
	}
	var out []InventoryHost
	for _, name := range inv.order {
		if !chosen[name] {
			continue
		}
		h, err := inv.connection(name)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s selects no host of the inventory %s", strings.Join(patterns, " "), inv.Path)
	}
	return out, nil
}

// connection reads a host's connection variables, as well as their older
// ansible_ssh_ names.
func (inv *Inventory) connection(name string) (InventoryHost, error) {
	vars := inv.Vars(name)
	get := func(key, old string) string {
		if v, ok := vars[key]; ok {
			return v
		}
		return vars[old]
	}
	h := InventoryHost{Name: name, Address: name,
		User: get("ansible_user", "ansible_ssh_user"), KeyFile: get("ansible_ssh_private_key_file", "ansible_private_key_file")}
	if a := get("ansible_host", "ansible_ssh_host"); a != "" {
		h.Address = a
	}
	if p := get("ansible_port", "ansible_ssh_port"); p != "" {
		port, err := strconv.Atoi(p)
		if err != nil || port < 1 || port > 65535 {
			return h, fmt.Errorf("inventory %s: host %s has ansible_port %q: give a port number", inv.Path, name, p)
		}
		h.Port = port
	}
	// As ssh -i, to which Ansible passes it: ~ is the home, a relative
	// path is from the working directory.
	h.KeyFile = expandHome(h.KeyFile)
	return h, nil
}

func expandHome(path string) string {
	if rest, ok := strings.CutPrefix(path, "~/"); ok {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, rest)
		}
	}
	return path
}
