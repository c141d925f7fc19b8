package enroll

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// ansibleView is an inventory as ansible-inventory --list shows it: each
// host's variables, and each group's hosts (through its children too).
type ansibleView struct {
	Vars   map[string]map[string]string
	Groups map[string][]string
}

// readAnsibleList reads the output of the real ansible-inventory --list.
func readAnsibleList(t *testing.T, path string) ansibleView {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	var meta struct {
		HostVars map[string]map[string]any `json:"hostvars"`
	}
	json.Unmarshal(raw["_meta"], &meta)
	type group struct{ Hosts, Children []string }
	groups := map[string]group{}
	for name, g := range raw {
		if name != "_meta" {
			var gr group
			json.Unmarshal(g, &gr)
			groups[name] = gr
		}
	}
	v := ansibleView{Vars: map[string]map[string]string{}, Groups: map[string][]string{}}
	var members func(g string) []string
	members = func(g string) []string {
		out := slices.Clone(groups[g].Hosts)
		for _, c := range groups[g].Children {
			out = append(out, members(c)...)
		}
		return out
	}
	for name := range groups {
		hosts := members(name)
		slices.Sort(hosts)
		v.Groups[name] = slices.Compact(hosts)
		for _, h := range v.Groups[name] {
			v.Vars[h] = map[string]string{}
		}
	}
	for h, vars := range meta.HostVars {
		for k, val := range vars {
			switch val := val.(type) {
			case bool: // as Python writes them, and the inventory did
				v.Vars[h][k] = strings.ToUpper(fmt.Sprint(val)[:1]) + fmt.Sprint(val)[1:]
			default:
				v.Vars[h][k] = fmt.Sprint(val)
			}
		}
	}
	return v
}

func (inv *Inventory) view() ansibleView {
	v := ansibleView{Vars: map[string]map[string]string{}, Groups: map[string][]string{}}
	for _, h := range inv.order {
		v.Vars[h] = inv.Vars(h)
		for g := range inv.groupsOf(h) {
			v.Groups[g] = append(v.Groups[g], h)
		}
	}
	for g, hosts := range v.Groups {
		slices.Sort(hosts)
		v.Groups[g] = hosts
	}
	return v
}

// TestInventoryAsAnsibleReadsIt reads Ansible's own example inventories and
// compares with what the real ansible-inventory made of them.
func TestInventoryAsAnsibleReadsIt(t *testing.T) {
	for _, name := range []string{"ini-plugin-example-1.ini", "ini-plugin-example-2.ini", "complex.ini", "yaml-plugin-example.yml", "valid_sample.yml"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("..", "testdata", "inventory", "ansible", name)
			inv, err := ReadInventory(path)
			if err != nil {
				t.Fatal(err)
			}
			want := readAnsibleList(t, path+".ansible-inventory.json")
			got := inv.view()
			// ansible-inventory leaves out groups with no hosts, and lists all only by its children.
			for g, hosts := range got.Groups {
				if len(hosts) == 0 {
					delete(got.Groups, g)
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got\n%v\nwant (ansible-inventory --list)\n%v", got, want)
			}
		})
	}
}

func TestInventorySelect(t *testing.T) {
	dir := t.TempDir()
	ini := filepath.Join(dir, "hosts")
	os.WriteFile(ini, []byte(`# a team's inventory
[web]
web[1:2].example.com ansible_user=deploy
db.example.com:2222

[ci:children]
builders

[builders]
b1 ansible_host=10.0.0.5 ansible_ssh_private_key_file=~/.ssh/ci
b2 ansible_host=::1 ansible_port=2200

[builders:vars]
ansible_user = "ci"

[all:vars]
ansible_user=root
`), 0o600)
	yml := filepath.Join(dir, "hosts.yml")
	os.WriteFile(yml, []byte(`all:
  vars:
    ansible_user: root
  children:
    web:
      hosts:
        web[1:2].example.com:
          ansible_user: deploy
        db.example.com:2222:
    ci:
      children:
        builders:
          vars:
            ansible_user: ci
          hosts:
            b1:
              ansible_host: 10.0.0.5
              ansible_ssh_private_key_file: ~/.ssh/ci
            b2:
              ansible_host: "::1"
              ansible_port: 2200
`), 0o600)
	home, _ := os.UserHomeDir()
	web := []InventoryHost{
		{Name: "web1.example.com", Address: "web1.example.com", User: "deploy"},
		{Name: "web2.example.com", Address: "web2.example.com", User: "deploy"},
		{Name: "db.example.com", Address: "db.example.com", Port: 2222, User: "root"},
	}
	ci := []InventoryHost{
		{Name: "b1", Address: "10.0.0.5", User: "ci", KeyFile: filepath.Join(home, ".ssh/ci")},
		{Name: "b2", Address: "::1", Port: 2200, User: "ci"},
	}
	for _, path := range []string{ini, yml} {
		inv, err := ReadInventory(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			patterns []string
			want     []InventoryHost
		}{
			{nil, append(slices.Clone(web), ci...)},
			{[]string{"web"}, web},
			{[]string{"ci"}, ci},
			{[]string{"builders", "db.example.com"}, []InventoryHost{web[2], ci[0], ci[1]}},
		} {
			got, err := inv.Select(c.patterns)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("%s: Select(%q) =\n%+v\nwant\n%+v", filepath.Base(path), c.patterns, got, c.want)
			}
		}
		_, err = inv.Select([]string{"nope"})
		want := fmt.Sprintf(`"nope" is neither a group nor a host of the inventory %s: its groups are all, builders, ci, ungrouped, web`, path)
		if err == nil || err.Error() != want {
			t.Errorf("Select(nope): %v, want %s", err, want)
		}
	}
}
