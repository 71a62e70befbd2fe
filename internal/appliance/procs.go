package appliance

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cgroupTop is the cgroup (in every v1 hierarchy) below which every process the
// appliance starts lives: daemons under daemons/<name>, each node's pods under <node>
// (the kubelet's cgroupRoot). Killing what is in this tree ends exactly what `up`
// started, shims and containers included, even when the state file is lost.
const cgroupTop = "edgenet"

// proc is a process that up started, identified by PID and kernel start time so that a
// recycled PID is never mistaken for ours.
type proc struct {
	Name  string `json:"name"`
	Node  string `json:"node,omitempty"`
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
	Log   string `json:"log"`
}

// alive reports whether the recorded process still runs.
func (p proc) alive() bool {
	st, err := procStartTime(p.PID)
	return err == nil && st == p.Start
}

func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// comm may contain spaces and parentheses: fields start after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat of %d: malformed", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, fmt.Errorf("stat of %d: short", pid)
	}
	if f[0] == "Z" {
		return 0, fmt.Errorf("pid %d is a zombie", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// cgroupHierarchies lists the mount points of the cgroup hierarchies: every v1 one and
// the v2 one of a hybrid host, where runc also makes the containers' cgroups.
func cgroupHierarchies() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i, x := range fields {
			if x == "-" && i+1 < len(fields) && (fields[i+1] == "cgroup" || fields[i+1] == "cgroup2") {
				out = append(out, fields[4])
			}
		}
	}
	return out, sc.Err()
}

// makeCgroup creates rel (e.g. "edgenet/node1") in every hierarchy, seeding cpuset
// files from the parent as the kernel requires before a task may join.
func makeCgroup(rel string) ([]string, error) {
	hs, err := cgroupHierarchies()
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, h := range hs {
		cur := h
		for _, part := range strings.Split(rel, "/") {
			parent := cur
			cur = filepath.Join(cur, part)
			if err := os.Mkdir(cur, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return nil, fmt.Errorf("cgroup %s: %w", cur, err)
			}
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				if v, err := os.ReadFile(filepath.Join(parent, f)); err == nil {
					if cur, err := os.ReadFile(filepath.Join(cur, f)); err == nil && strings.TrimSpace(string(cur)) != "" {
						continue
					}
					if err := os.WriteFile(filepath.Join(cur, f), v, 0o644); err != nil {
						return nil, fmt.Errorf("cgroup %s/%s: %w", cur, f, err)
					}
				}
			}
		}
		dirs = append(dirs, cur)
	}
	return dirs, nil
}

// cgroupPIDs returns every PID in the appliance's cgroup tree, in any hierarchy.
func cgroupPIDs() []int {
	hs, _ := cgroupHierarchies()
	seen := map[int]bool{}
	for _, h := range hs {
		filepath.WalkDir(filepath.Join(h, cgroupTop), func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			if err != nil {
				return nil
			}
			for _, l := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(l); err == nil {
					seen[pid] = true
				}
			}
			return nil
		})
	}
	pids := make([]int, 0, len(seen))
	for p := range seen {
		pids = append(pids, p)
	}
	sort.Ints(pids)
	return pids
}

// removeCgroups deletes the appliance's cgroup tree, deepest first.
func removeCgroups() error {
	hs, err := cgroupHierarchies()
	if err != nil {
		return err
	}
	var errs []error
	for _, h := range hs {
		var dirs []string
		filepath.WalkDir(filepath.Join(h, cgroupTop), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := rmdirRetry(dirs[i]); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func rmdirRetry(dir string) error {
	var err error
	for i := 0; i < 50; i++ {
		if err = syscall.Rmdir(dir); err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("rmdir %s: %w", dir, err)
}

// launch starts argv detached from our session, inside netns (when set) and inside the
// cgroup daemons/<name>, with output to logPath. The shell joins the cgroup before it
// execs, so nothing the daemon forks can escape the tree.
func launch(name, netns, logPath string, env, argv []string) (proc, error) {
	dirs, err := makeCgroup(cgroupTop + "/daemons/" + name)
	if err != nil {
		return proc{}, err
	}
	if netns != "" {
		argv = append([]string{"nsenter", "--net=/run/netns/" + netns, "--"}, argv...)
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return proc{}, err
	}
	defer logf.Close()
	script := `for d in $EDGENET_CGROUPS; do echo $$ > "$d/cgroup.procs" || exit 97; done; exec "$@"`
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, "edgenet-" + name}, argv...)...)
	cmd.Env = append(append(os.Environ(), env...), "EDGENET_CGROUPS="+strings.Join(dirs, " "))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return proc{}, fmt.Errorf("start %s: %w", name, err)
	}
	pid := cmd.Process.Pid
	// Reap it in the background so that a daemon dying while up runs is no zombie.
	go cmd.Wait()
	st, err := procStartTime(pid)
	if err != nil {
		return proc{}, fmt.Errorf("start %s: exited at once (see %s)", name, logPath)
	}
	return proc{Name: name, PID: pid, Start: st, Log: logPath}, nil
}

// stopProcs ends the given processes (SIGTERM, then SIGKILL after grace) and waits
// until they are gone.
func stopProcs(ps []proc, grace time.Duration) {
	var live []proc
	for _, p := range ps {
		if p.alive() {
			syscall.Kill(p.PID, syscall.SIGTERM)
			live = append(live, p)
		}
	}
	deadline := time.Now().Add(grace)
	for _, p := range live {
		for p.alive() && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if p.alive() {
			syscall.Kill(p.PID, syscall.SIGKILL)
		}
	}
	for _, p := range live {
		for i := 0; i < 100 && p.alive(); i++ {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// killCgroupTree SIGKILLs whatever still runs in the appliance's cgroup tree (container
// processes, shims) and waits until the tree is empty. A killed daemon whose parent
// was up is reparented to init and stays in its cgroup as a zombie until init reaps
// it, which can take seconds here; the cgroups can only be removed after that.
func killCgroupTree() error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		pids := cgroupPIDs()
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("processes left in cgroup %s: %v", cgroupTop, cgroupPIDs())
}
