package ci

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"dagger.io/dagger"

	"github.com/example/sidecar/ci/ecr"
)

// publish pushes the tested multi-platform image under each tag that does
// not already point at it. It decides for every tag before pushing any,
// so a conflict pushes nothing.
func (r *Runner) publish(ctx context.Context, client *dagger.Client, img *Image, reg *ecr.Registry, tags []string) error {
	r.step("push: checking tags %s in %s", strings.Join(tags, ", "), reg.URI)
	existing, err := reg.Lookup(ctx, tags)
	if err != nil {
		return err
	}
	plan, err := ecr.Decide(reg.Repository, img.Digest, tags, existing, reg.Immutable)
	if err != nil {
		return fmt.Errorf("push refused (nothing pushed): %w", err)
	}
	if plan.Released {
		// A rebuild is not byte-identical; the commit's pushed image stands.
		r.step("push: commit %s already in ECR as %s; this rebuild (%s) is not pushed",
			tags[0], plan.Skip[tags[0]], orUnknown(img.Digest))
		if len(plan.Promote) > 0 {
			r.step("push: releasing the pushed image as %s", strings.Join(slices.Sorted(maps.Keys(plan.Promote)), ", "))
		}
	}
	for _, tag := range tags {
		if d, ok := plan.Skip[tag]; ok {
			r.step("push: %s already at %s: skipped", reg.Ref(tag), d)
			fmt.Fprintln(r.out(), reg.Ref(tag)+"@"+d)
		}
	}
	for _, tag := range tags {
		d, ok := plan.Promote[tag]
		if !ok {
			continue
		}
		if old, ok := plan.Moves[tag]; ok {
			r.step("push: moving mutable tag %s from %s", tag, old)
		}
		r.step("push: tagging %s as %s", d, reg.Ref(tag))
		if err := reg.Retag(ctx, d, tag); err != nil {
			return err
		}
		fmt.Fprintln(r.out(), reg.Ref(tag)+"@"+d)
	}
	if len(plan.Publish) == 0 {
		r.step("push: nothing to push; every tag points at the commit's image")
		return nil
	}

	secrets, err := newSecretFile()
	if err != nil {
		return err
	}
	defer secrets.Close()
	pw, err := secrets.secret(client, "ecr-password", reg.Password())
	if err != nil {
		return err
	}
	base := client.Container().WithRegistryAuth(reg.Host, reg.Username, pw)
	var pushed []string
	for _, tag := range plan.Publish {
		if old, ok := plan.Moves[tag]; ok {
			r.step("push: moving mutable tag %s from %s", tag, old)
		}
		r.step("push: publishing %s (%d platforms)", reg.Ref(tag), len(img.Variants))
		ref, err := base.Publish(ctx, reg.Ref(tag), dagger.ContainerPublishOpts{
			PlatformVariants: img.Variants, ForcedCompression: dagger.ImageLayerCompressionGzip,
		})
		if err != nil {
			return fmt.Errorf("publish %s (pushed so far: %s): %w", reg.Ref(tag), listOrNone(pushed), err)
		}
		pushed = append(pushed, ref)
		r.step("push: pushed %s", ref)
		if _, digest, ok := strings.Cut(ref, "@"); ok && digest != img.Digest {
			r.step("push: note: registry digest %s differs from the measured export %s", digest, img.Digest)
		}
	}
	for _, ref := range pushed {
		fmt.Fprintln(r.out(), ref)
	}
	r.step("push: pushed %d reference(s)", len(pushed))
	return nil
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
