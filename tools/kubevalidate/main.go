// Command kubevalidate checks rendered Kubernetes manifests (the output of `helm template`)
// without a cluster and without fetching anything:
//
//   - every document is decoded STRICTLY into its k8s.io/api type (unknown or duplicate fields,
//     wrong types and malformed quantities are errors; so is a kind it does not know);
//   - monitoring.coreos.com/v1 ServiceMonitor is decoded strictly into a minimal struct below;
//   - cross-references are checked: selectors match the pods they are meant for, named ports
//     exist, volume mounts name volumes, ConfigMaps that pods use are rendered, names and labels
//     are valid, no object is rendered twice.
//
// Usage: kubevalidate [FILE ...]   (no FILE, or "-": standard input). Exit 1 on any problem.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsyaml "sigs.k8s.io/yaml"
)

var promDuration = regexp.MustCompile(`^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$`)

type doc struct {
	source string // the "# Source:" comment helm writes, or the file and index
	obj    runtime.Object
	sm     *ServiceMonitor
	kind   string
	name   string
	ns     string
}

type checker struct {
	problems []string
	docs     []doc
}

func (c *checker) addf(d doc, format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf("%s (%s %s): %s", d.source, d.kind, d.name, fmt.Sprintf(format, args...)))
}

func newDecoder() runtime.Decoder {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, autoscalingv2.AddToScheme,
		networkingv1.AddToScheme, policyv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}

var sourceRe = regexp.MustCompile(`(?m)^# Source: (.+)$`)

func (c *checker) read(name string, r io.Reader) error {
	decoder := newDecoder()
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	for i := 0; ; i++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		source := fmt.Sprintf("%s#%d", name, i)
		if m := sourceRe.FindSubmatch(raw); m != nil {
			source = string(m[1])
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := sigsyaml.Unmarshal(raw, &head); err != nil {
			c.problems = append(c.problems, fmt.Sprintf("%s: not YAML: %v", source, err))
			continue
		}
		if head.APIVersion == "" && head.Kind == "" {
			if len(bytes.TrimSpace(stripComments(raw))) != 0 {
				c.problems = append(c.problems, fmt.Sprintf("%s: document has no apiVersion/kind", source))
			}
			continue
		}
		d := doc{source: source, kind: head.Kind}
		if head.APIVersion == "monitoring.coreos.com/v1" && head.Kind == "ServiceMonitor" {
			var sm ServiceMonitor
			if err := sigsyaml.UnmarshalStrict(raw, &sm); err != nil {
				c.problems = append(c.problems, fmt.Sprintf("%s (ServiceMonitor): %v", source, err))
				continue
			}
			d.sm, d.name, d.ns = &sm, sm.Metadata.Name, sm.Metadata.Namespace
		} else {
			obj, _, err := decoder.Decode(raw, nil, nil)
			if err != nil {
				c.problems = append(c.problems, fmt.Sprintf("%s (%s %s): %v", source, head.APIVersion, head.Kind, err))
				continue
			}
			meta, err := metaOf(obj)
			if err != nil {
				c.problems = append(c.problems, fmt.Sprintf("%s: %v", source, err))
				continue
			}
			d.obj, d.name, d.ns = obj, meta.Name, meta.Namespace
		}
		c.docs = append(c.docs, d)
	}
}

func stripComments(b []byte) []byte {
	var out [][]byte
	for _, line := range bytes.Split(b, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

func metaOf(obj runtime.Object) (*metav1.ObjectMeta, error) {
	type hasMeta interface{ GetObjectMeta() metav1.Object }
	if m, ok := obj.(hasMeta); ok {
		if om, ok := m.GetObjectMeta().(*metav1.ObjectMeta); ok {
			return om, nil
		}
	}
	return nil, fmt.Errorf("%T has no object metadata", obj)
}

// -- checks -----------------------------------------------------------------------------------

type podSet struct {
	owner  string
	ns     string
	labels map[string]string
	spec   *corev1.PodSpec
}

func (c *checker) check() {
	seen := map[string]string{}
	var pods []podSet
	configMaps := map[string]bool{}
	services := map[string]*corev1.Service{}
	for _, d := range c.docs {
		key := d.kind + "/" + d.ns + "/" + d.name
		if prev, ok := seen[key]; ok {
			c.addf(d, "rendered twice (also in %s)", prev)
		}
		seen[key] = d.source
		c.checkMeta(d)
		switch o := d.obj.(type) {
		case *appsv1.Deployment:
			pods = append(pods, podSet{"Deployment/" + o.Name, o.Namespace, o.Spec.Template.Labels, &o.Spec.Template.Spec})
		case *corev1.Pod:
			pods = append(pods, podSet{"Pod/" + o.Name, o.Namespace, o.Labels, &o.Spec})
		case *corev1.ConfigMap:
			configMaps[o.Name] = true
		case *corev1.Service:
			services[o.Name] = o
		}
	}

	for _, d := range c.docs {
		switch o := d.obj.(type) {
		case *appsv1.Deployment:
			sel, err := metav1.LabelSelectorAsSelector(o.Spec.Selector)
			switch {
			case o.Spec.Selector == nil || err != nil:
				c.addf(d, "spec.selector is missing or invalid: %v", err)
			case sel.Empty():
				c.addf(d, "spec.selector is empty")
			case !sel.Matches(labels.Set(o.Spec.Template.Labels)):
				c.addf(d, "spec.selector %s does not match the pod template's labels %v", sel, o.Spec.Template.Labels)
			}
			c.checkPodSpec(d, &o.Spec.Template.Spec, configMaps)
		case *corev1.Pod:
			c.checkPodSpec(d, &o.Spec, configMaps)
		case *corev1.Service:
			if len(o.Spec.Selector) == 0 {
				c.addf(d, "spec.selector is empty")
				break
			}
			matched := c.matching(pods, labels.SelectorFromSet(o.Spec.Selector), true)
			if len(matched) == 0 {
				c.addf(d, "spec.selector %v matches no rendered workload", o.Spec.Selector)
			}
			c.notBarePods(d, labels.SelectorFromSet(o.Spec.Selector), pods)
			for _, p := range o.Spec.Ports {
				if errs := validation.IsValidPortName(p.Name); p.Name != "" && len(errs) > 0 {
					c.addf(d, "port name %q: %s", p.Name, strings.Join(errs, "; "))
				}
				if p.TargetPort.Type == intstr.String {
					for _, ps := range matched {
						if !hasPort(ps.spec, p.TargetPort.StrVal) {
							c.addf(d, "targetPort %q is not a container port of %s", p.TargetPort.StrVal, ps.owner)
						}
					}
				}
			}
		case *policyv1.PodDisruptionBudget:
			if (o.Spec.MinAvailable == nil) == (o.Spec.MaxUnavailable == nil) {
				c.addf(d, "exactly one of minAvailable and maxUnavailable must be set")
			}
			c.selectorMatches(d, o.Spec.Selector, pods, true)
		case *networkingv1.NetworkPolicy:
			c.selectorMatches(d, &o.Spec.PodSelector, pods, true)
		case *autoscalingv2.HorizontalPodAutoscaler:
			ref := o.Spec.ScaleTargetRef
			if _, ok := seen[ref.Kind+"/"+o.Namespace+"/"+ref.Name]; !ok {
				c.addf(d, "scaleTargetRef %s/%s is not rendered", ref.Kind, ref.Name)
			}
			if o.Spec.MinReplicas != nil && *o.Spec.MinReplicas > o.Spec.MaxReplicas {
				c.addf(d, "minReplicas %d > maxReplicas %d", *o.Spec.MinReplicas, o.Spec.MaxReplicas)
			}
			if len(o.Spec.Metrics) == 0 {
				c.addf(d, "no metrics")
			}
		case *networkingv1.Ingress:
			for _, rule := range o.Spec.Rules {
				if rule.HTTP == nil {
					continue
				}
				for _, path := range rule.HTTP.Paths {
					c.checkBackend(d, path.Backend, services)
				}
			}
			if o.Spec.DefaultBackend != nil {
				c.checkBackend(d, *o.Spec.DefaultBackend, services)
			}
		}
		if d.sm != nil {
			c.checkServiceMonitor(d, services)
		}
	}
}

func (c *checker) checkMeta(d doc) {
	if d.name == "" {
		c.addf(d, "metadata.name is empty")
		return
	}
	nameErrs := validation.IsDNS1123Subdomain(d.name)
	if d.kind == "Service" {
		nameErrs = validation.IsDNS1035Label(d.name)
	}
	for _, e := range nameErrs {
		c.addf(d, "metadata.name %q: %s", d.name, e)
	}
	var meta *metav1.ObjectMeta
	if d.sm != nil {
		meta = &d.sm.Metadata
	} else if m, err := metaOf(d.obj); err == nil {
		meta = m
	}
	if meta == nil {
		return
	}
	checkLabels := func(where string, set map[string]string) {
		for k, v := range set {
			for _, e := range validation.IsQualifiedName(k) {
				c.addf(d, "%s key %q: %s", where, k, e)
			}
			for _, e := range validation.IsValidLabelValue(v) {
				c.addf(d, "%s %q value %q: %s", where, k, v, e)
			}
		}
	}
	checkLabels("label", meta.Labels)
	for k := range meta.Annotations {
		for _, e := range validation.IsQualifiedName(k) {
			c.addf(d, "annotation key %q: %s", k, e)
		}
	}
	if dep, ok := d.obj.(*appsv1.Deployment); ok {
		checkLabels("pod template label", dep.Spec.Template.Labels)
	}
}

func (c *checker) checkPodSpec(d doc, spec *corev1.PodSpec, configMaps map[string]bool) {
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		if _, dup := volumes[v.Name]; dup {
			c.addf(d, "volume %q declared twice", v.Name)
		}
		volumes[v.Name] = v
		if v.ConfigMap != nil && !configMaps[v.ConfigMap.Name] && (v.ConfigMap.Optional == nil || !*v.ConfigMap.Optional) {
			c.addf(d, "volume %q uses ConfigMap %q, which is not rendered", v.Name, v.ConfigMap.Name)
		}
	}
	used := map[string]bool{}
	names := map[string]bool{}
	all := append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
	if len(spec.Containers) == 0 {
		c.addf(d, "no containers")
	}
	for _, ct := range all {
		if names[ct.Name] {
			c.addf(d, "container name %q used twice", ct.Name)
		}
		names[ct.Name] = true
		if ct.Image == "" {
			c.addf(d, "container %q has no image", ct.Name)
		}
		ports := map[string]bool{}
		for _, p := range ct.Ports {
			if p.Name == "" {
				continue
			}
			if errs := validation.IsValidPortName(p.Name); len(errs) > 0 {
				c.addf(d, "container %q port name %q: %s", ct.Name, p.Name, strings.Join(errs, "; "))
			}
			if ports[p.Name] {
				c.addf(d, "container %q port name %q used twice", ct.Name, p.Name)
			}
			ports[p.Name] = true
		}
		for what, probe := range map[string]*corev1.Probe{"livenessProbe": ct.LivenessProbe, "readinessProbe": ct.ReadinessProbe, "startupProbe": ct.StartupProbe} {
			if probe == nil {
				continue
			}
			var port *intstr.IntOrString
			switch {
			case probe.HTTPGet != nil:
				port = &probe.HTTPGet.Port
			case probe.TCPSocket != nil:
				port = &probe.TCPSocket.Port
			case probe.Exec == nil && probe.GRPC == nil:
				c.addf(d, "container %q %s has no handler", ct.Name, what)
			}
			if port != nil && port.Type == intstr.String && !ports[port.StrVal] {
				c.addf(d, "container %q %s uses port %q, which the container does not declare", ct.Name, what, port.StrVal)
			}
		}
		for _, m := range ct.VolumeMounts {
			if _, ok := volumes[m.Name]; !ok {
				c.addf(d, "container %q mounts %q, which is not a volume of the pod", ct.Name, m.Name)
			}
			used[m.Name] = true
		}
		for _, e := range ct.Env {
			for _, msg := range validation.IsEnvVarName(e.Name) {
				c.addf(d, "container %q env %q: %s", ct.Name, e.Name, msg)
			}
			if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil && !configMaps[e.ValueFrom.ConfigMapKeyRef.Name] {
				c.addf(d, "container %q env %q uses ConfigMap %q, which is not rendered", ct.Name, e.Name, e.ValueFrom.ConfigMapKeyRef.Name)
			}
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && (e.ValueFrom.SecretKeyRef.Name == "" || e.ValueFrom.SecretKeyRef.Key == "") {
				c.addf(d, "container %q env %q: secretKeyRef needs a name and a key", ct.Name, e.Name)
			}
		}
		for _, e := range ct.EnvFrom {
			if e.SecretRef != nil && e.SecretRef.Name == "" {
				c.addf(d, "container %q envFrom secretRef has no name", ct.Name)
			}
		}
	}
	for name := range volumes {
		if !used[name] {
			c.addf(d, "volume %q is mounted by no container", name)
		}
	}
}

func hasPort(spec *corev1.PodSpec, name string) bool {
	for _, ct := range spec.Containers {
		for _, p := range ct.Ports {
			if p.Name == name {
				return true
			}
		}
	}
	return false
}

func (c *checker) matching(pods []podSet, sel labels.Selector, workloadsOnly bool) []podSet {
	var out []podSet
	for _, p := range pods {
		if workloadsOnly && strings.HasPrefix(p.owner, "Pod/") {
			continue // helm test pods are not what Services, PDBs and policies are for
		}
		if sel.Matches(labels.Set(p.labels)) {
			out = append(out, p)
		}
	}
	return out
}

func (c *checker) selectorMatches(d doc, ls *metav1.LabelSelector, pods []podSet, workloadsOnly bool) {
	if ls == nil {
		c.addf(d, "selector is missing")
		return
	}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		c.addf(d, "selector: %v", err)
		return
	}
	if sel.Empty() {
		c.addf(d, "selector is empty (it would select every pod of the namespace)")
		return
	}
	if len(c.matching(pods, sel, workloadsOnly)) == 0 {
		c.addf(d, "selector %s matches no rendered workload", sel)
	}
	c.notBarePods(d, sel, pods)
}

// notBarePods reports a selector that also picks a bare Pod (a helm test hook): a Service would
// send it traffic, a PDB would count it.
func (c *checker) notBarePods(d doc, sel labels.Selector, pods []podSet) {
	for _, p := range pods {
		if strings.HasPrefix(p.owner, "Pod/") && sel.Matches(labels.Set(p.labels)) {
			c.addf(d, "selector %s also matches the bare %s", sel, p.owner)
		}
	}
}

func (c *checker) checkBackend(d doc, b networkingv1.IngressBackend, services map[string]*corev1.Service) {
	if b.Service == nil {
		c.addf(d, "backend without a service")
		return
	}
	svc, ok := services[b.Service.Name]
	if !ok {
		c.addf(d, "backend service %q is not rendered", b.Service.Name)
		return
	}
	for _, p := range svc.Spec.Ports {
		if (b.Service.Port.Name != "" && p.Name == b.Service.Port.Name) || (b.Service.Port.Number != 0 && p.Port == b.Service.Port.Number) {
			return
		}
	}
	c.addf(d, "backend port %+v is not a port of Service %q", b.Service.Port, b.Service.Name)
}

func (c *checker) checkServiceMonitor(d doc, services map[string]*corev1.Service) {
	sm := d.sm
	if len(sm.Spec.Endpoints) == 0 {
		c.addf(d, "no endpoints")
	}
	sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil || sel.Empty() {
		c.addf(d, "selector is empty or invalid: %v", err)
		return
	}
	var matched []*corev1.Service
	names := make([]string, 0, len(services))
	for n := range services {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if sel.Matches(labels.Set(services[n].Labels)) {
			matched = append(matched, services[n])
		}
	}
	if len(matched) == 0 {
		c.addf(d, "selector %s matches no rendered Service", sel)
	}
	for _, ep := range sm.Spec.Endpoints {
		for _, dur := range []string{ep.Interval, ep.ScrapeTimeout} {
			if dur != "" && !promDuration.MatchString(dur) {
				c.addf(d, "%q is not a Prometheus duration", dur)
			}
		}
		if ep.Scheme != "" && ep.Scheme != "http" && ep.Scheme != "https" {
			c.addf(d, "scheme %q is neither http nor https", ep.Scheme)
		}
		if ep.Port == "" {
			continue
		}
		for _, svc := range matched {
			found := false
			for _, p := range svc.Spec.Ports {
				found = found || p.Name == ep.Port
			}
			if !found {
				c.addf(d, "endpoint port %q is not a named port of Service %q", ep.Port, svc.Name)
			}
		}
	}
}

func main() {
	c := &checker{}
	args := os.Args[1:]
	if len(args) == 0 {
		args = []string{"-"}
	}
	for _, a := range args {
		if a == "-h" || a == "--help" {
			fmt.Println("usage: kubevalidate [FILE ...]   (no FILE or '-': standard input)")
			return
		}
		var r io.Reader = os.Stdin
		name := "<stdin>"
		if a != "-" {
			f, err := os.Open(a)
			if err != nil {
				fmt.Fprintln(os.Stderr, "kubevalidate:", err)
				os.Exit(2)
			}
			defer f.Close()
			r, name = f, a
		}
		if err := c.read(name, r); err != nil {
			fmt.Fprintln(os.Stderr, "kubevalidate:", err)
			os.Exit(2)
		}
	}
	if len(c.docs) == 0 && len(c.problems) == 0 {
		fmt.Fprintln(os.Stderr, "kubevalidate: no manifests in the input")
		os.Exit(1)
	}
	c.check()
	if len(c.problems) > 0 {
		for _, p := range c.problems {
			fmt.Fprintln(os.Stderr, "kubevalidate:", p)
		}
		fmt.Fprintf(os.Stderr, "kubevalidate: %d problem(s) in %d manifest(s)\n", len(c.problems), len(c.docs))
		os.Exit(1)
	}
	kinds := map[string]int{}
	for _, d := range c.docs {
		kinds[d.kind]++
	}
	var parts []string
	for k, n := range kinds {
		parts = append(parts, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(parts)
	fmt.Printf("kubevalidate: %d manifest(s) OK (%s)\n", len(c.docs), strings.Join(parts, " "))
}
