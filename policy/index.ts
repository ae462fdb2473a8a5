// hakube's policy pack: the HA invariants of rules.ts (mandatory) and a certificate
// renewal warning (advisory). Run it with
//   pulumi preview --policy-pack policy/      (or pulumi up --policy-pack policy/)
// from the repository root; see policy/README.md.
import { PolicyPack } from "@pulumi/policy";
import { hakubePolicies } from "./rules";

new PolicyPack("hakube-ha", {
  enforcementLevel: "mandatory",
  policies: hakubePolicies,
});
