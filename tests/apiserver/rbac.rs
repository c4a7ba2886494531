//! RBAC: roles, bindings and the authorizer, escalation checks, TokenReview
//! and impersonation granted by RBAC.

use std::process::Output;

use serde_json::{Value, json};

use super::*;

#[tokio::test]
async fn rbac_roles_bindings_and_authorizer() {
    let s = Server::start();
    let bob = ["--token", "viewer-token"];
    let as_bob = |args: &[&str]| {
        let mut all = bob.to_vec();
        all.extend_from_slice(args);
        s.kubectl(&all)
    };
    let out_of = |o: &Output| String::from_utf8_lossy(&o.stdout).trim().to_string();
    let err_of = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();

    // The default roles and bindings are there from the first start.
    let roles = s.ok(&["get", "clusterroles"]);
    for r in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:basic-user",
        "system:discovery",
    ] {
        assert!(
            roles.lines().any(|l| l.starts_with(&format!("{r} "))),
            "{r}: {roles}"
        );
    }
    assert!(roles.starts_with("NAME"), "{roles}");
    assert!(roles.contains("CREATED AT"), "{roles}");

    // bob (group dev) holds nothing yet.
    let o = as_bob(&["get", "pods"]);
    assert!(err_of(&o).contains("forbidden"), "{}", err_of(&o));
    assert_eq!(out_of(&as_bob(&["auth", "can-i", "list", "pods"])), "no");
    // ...but may ask about himself (system:basic-user).
    assert_eq!(
        out_of(&as_bob(&[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}"
        ])),
        "bob"
    );

    // view in default, by a RoleBinding kubectl sends as protobuf.
    s.ok(&[
        "create",
        "rolebinding",
        "bob-view",
        "--clusterrole=view",
        "--user=bob",
        "-n",
        "default",
    ]);
    let rb = s.ok(&["get", "rolebindings", "-n", "default", "-o", "wide"]);
    assert!(rb.contains("ROLE"), "{rb}");
    assert!(rb.contains("ClusterRole/view"), "{rb}");
    assert!(as_bob(&["get", "pods", "-n", "default"]).status.success());
    assert!(err_of(&as_bob(&["get", "pods", "-n", "kube-system"])).contains("forbidden"));
    assert_eq!(
        out_of(&as_bob(&["auth", "can-i", "list", "pods", "-n", "default"])),
        "yes"
    );
    assert_eq!(
        out_of(&as_bob(&[
            "auth", "can-i", "create", "pods", "-n", "default"
        ])),
        "no"
    );
    assert_eq!(
        out_of(&as_bob(&[
            "auth", "can-i", "get", "secrets", "-n", "default"
        ])),
        "no"
    );
    let list = out_of(&as_bob(&["auth", "can-i", "--list", "-n", "default"]));
    assert!(list.contains("pods/log"), "{list}");
    // An admin asking on bob's behalf gets the same answers.
    assert_eq!(
        s.ok(&[
            "auth", "can-i", "list", "pods", "-n", "default", "--as", "bob"
        ])
        .trim(),
        "yes"
    );

    // A Role limited by resourceNames, bound to bob's group.
    s.ok(&["create", "configmap", "one", "-n", "default"]);
    s.ok(&["create", "configmap", "two", "-n", "default"]);
    s.ok(&[
        "create",
        "role",
        "cm-one",
        "--verb=update,patch",
        "--resource=configmaps",
        "--resource-name=one",
        "-n",
        "default",
    ]);
    s.ok(&[
        "create",
        "rolebinding",
        "dev-cm-one",
        "--role=cm-one",
        "--group=dev",
        "-n",
        "default",
    ]);
    assert!(
        as_bob(&["label", "configmap", "one", "x=y", "-n", "default"])
            .status
            .success()
    );
    let o = as_bob(&["label", "configmap", "two", "x=y", "-n", "default"]);
    assert!(err_of(&o).contains("forbidden"), "{}", err_of(&o));

    // A service account bound cluster-wide to edit.
    s.ok(&["create", "serviceaccount", "robot", "-n", "default"]);
    s.ok(&[
        "create",
        "clusterrolebinding",
        "robot-edit",
        "--clusterrole=edit",
        "--serviceaccount=default:robot",
    ]);
    let token = s.ok(&["create", "token", "robot"]);
    let robot = ["--token", token.trim()];
    let o = s.kubectl(&[
        robot[0],
        robot[1],
        "create",
        "configmap",
        "made-by-robot",
        "-n",
        "kube-public",
    ]);
    assert!(o.status.success(), "{}", err_of(&o));
    let o = s.kubectl(&[robot[0], robot[1], "get", "nodes"]);
    assert!(err_of(&o).contains("forbidden"), "{}", err_of(&o));

    // Escalation: a namespace admin may grant what they hold, not more.
    s.ok(&[
        "create",
        "rolebinding",
        "bob-admin",
        "--clusterrole=admin",
        "--user=bob",
        "-n",
        "default",
    ]);
    let o = as_bob(&[
        "create",
        "rolebinding",
        "bob-god",
        "--clusterrole=cluster-admin",
        "--user=bob",
        "-n",
        "default",
    ]);
    assert!(err_of(&o).contains("not currently held"), "{}", err_of(&o));
    let o = as_bob(&[
        "create",
        "role",
        "pod-reader",
        "--verb=get,list",
        "--resource=pods",
        "-n",
        "default",
    ]);
    assert!(o.status.success(), "{}", err_of(&o));
    let o = as_bob(&[
        "create",
        "role",
        "node-reader",
        "--verb=get",
        "--resource=nodes",
        "-n",
        "default",
    ]);
    assert!(err_of(&o).contains("not currently held"), "{}", err_of(&o));
    let o = as_bob(&[
        "create",
        "rolebinding",
        "alice-reads",
        "--role=pod-reader",
        "--user=alice",
        "-n",
        "default",
    ]);
    assert!(o.status.success(), "{}", err_of(&o));
    // Still only in default.
    let o = as_bob(&[
        "create",
        "rolebinding",
        "x",
        "--clusterrole=view",
        "--user=bob",
        "-n",
        "kube-system",
    ]);
    assert!(err_of(&o).contains("forbidden"), "{}", err_of(&o));

    // roleRef is immutable; bad bindings are 422.
    let err = s.fails(&["patch", "rolebinding", "bob-view", "-n", "default", "--type=merge", "-p",
        r#"{"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"edit"}}"#]);
    assert!(err.contains("cannot change roleRef"), "{err}");
    let (code, body) = s
        .call(
            reqwest::Method::POST,
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            Some(ADMIN_TOKEN),
            "application/json",
            json!({"metadata": {"name": "bad"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "x"},
                   "subjects": [{"kind": "Robot", "name": "r"}]})
            .to_string()
            .into_bytes(),
        )
        .await;
    assert_eq!(code, 422, "{body}");

    // SubjectAccessReview: admins may ask about others, bob may not.
    let sar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "bob", "groups": ["dev"], "resourceAttributes":
            {"verb": "list", "resource": "pods", "namespace": "default"}}});
    let path = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
    let (code, body) = s
        .call(
            reqwest::Method::POST,
            path,
            Some(ADMIN_TOKEN),
            "application/json",
            sar.to_string().into_bytes(),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["status"]["allowed"], true);
    let mut other = sar.clone();
    other["spec"]["resourceAttributes"]["namespace"] = json!("kube-system");
    let (_, body) = s
        .call(
            reqwest::Method::POST,
            path,
            Some(ADMIN_TOKEN),
            "application/json",
            other.to_string().into_bytes(),
        )
        .await;
    assert_eq!(body["status"]["allowed"], false);
    let (code, _) = s
        .call(
            reqwest::Method::POST,
            path,
            Some("viewer-token"),
            "application/json",
            sar.to_string().into_bytes(),
        )
        .await;
    assert_eq!(code, 403);

    // Deleting the binding takes the permission away at once.
    s.ok(&[
        "delete",
        "rolebinding",
        "bob-view",
        "bob-admin",
        "-n",
        "default",
    ]);
    assert_eq!(
        out_of(&as_bob(&["auth", "can-i", "list", "pods", "-n", "default"])),
        "no"
    );
}

#[tokio::test]
async fn token_review_and_impersonation_by_rbac() {
    let s = Server::start();
    s.ok(&["create", "serviceaccount", "robot"]);
    let token = s.ok(&["create", "token", "robot"]);
    let review = |token: &str, audiences: Value| {
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
               "spec": {"token": token, "audiences": audiences}})
        .to_string()
        .into_bytes()
    };
    let path = "/apis/authentication.k8s.io/v1/tokenreviews";
    // A node may ask (webhook authentication), as may an admin.
    let (code, body) = s
        .call(
            reqwest::Method::POST,
            path,
            Some(N1_TOKEN),
            "application/json",
            review(token.trim(), json!([])),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["status"]["authenticated"], true);
    assert_eq!(
        body["status"]["user"]["username"],
        "system:serviceaccount:default:robot"
    );
    assert!(
        body["status"]["user"]["groups"]
            .as_array()
            .unwrap()
            .contains(&json!("system:serviceaccounts:default"))
    );
    let (_, body) = s
        .call(
            reqwest::Method::POST,
            path,
            Some(ADMIN_TOKEN),
            "application/json",
            review("nope", json!([])),
        )
        .await;
    assert_eq!(body["status"]["authenticated"], false);
    // Audiences: a token for "vault" reviews fine for vault, not for the API.
    let vault = s.ok(&["create", "token", "robot", "--audience", "vault"]);
    let (_, body) = s
        .call(
            reqwest::Method::POST,
            path,
            Some(ADMIN_TOKEN),
            "application/json",
            review(vault.trim(), json!(["vault"])),
        )
        .await;
    assert_eq!(body["status"]["authenticated"], true, "{body}");
    assert_eq!(body["status"]["audiences"], json!(["vault"]));
    let (_, body) = s
        .call(
            reqwest::Method::POST,
            path,
            Some(ADMIN_TOKEN),
            "application/json",
            review(vault.trim(), json!([])),
        )
        .await;
    assert_eq!(body["status"]["authenticated"], false);
    // bob may not ask.
    let (code, _) = s
        .call(
            reqwest::Method::POST,
            path,
            Some("viewer-token"),
            "application/json",
            review(token.trim(), json!([])),
        )
        .await;
    assert_eq!(code, 403);

    // Impersonation through RBAC: edit lets bob act as service accounts of
    // the namespace, not as users.
    s.ok(&[
        "create",
        "rolebinding",
        "bob-edit",
        "--clusterrole=edit",
        "--user=bob",
    ]);
    s.ok(&[
        "create",
        "rolebinding",
        "robot-view",
        "--clusterrole=view",
        "--serviceaccount=default:robot",
    ]);
    let out = s.ok(&[
        "--token",
        "viewer-token",
        "auth",
        "whoami",
        "--as",
        "system:serviceaccount:default:robot",
        "-o",
        "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
    ]);
    assert!(
        out.starts_with("system:serviceaccount:default:robot "),
        "{out}"
    );
    assert!(out.contains("system:serviceaccounts:default"), "{out}");
    // (kubectl's discovery is refused first, so it reports a bare Forbidden.)
    let err = s.fails(&["--token", "viewer-token", "get", "pods", "--as", "alice"]);
    assert!(err.contains("Forbidden"), "{err}");
    let resp = s
        .http()
        .get(format!("{}/api/v1/namespaces/kube-system/pods", s.url))
        .bearer_auth("viewer-token")
        .header(
            "Impersonate-User",
            "system:serviceaccount:kube-system:default",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("cannot impersonate resource") && text.contains("serviceaccounts"),
        "{text}"
    );
}
