//! The IPC surface through Tauri's mock runtime: the real commands, capabilities and event
//! forwarding of the shell, over a real `App` on a real embedded server, without a display.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use confab_app::{BINDINGS_PATH, context, forward_events, ipc};
use confab_client::app::{App, AppOptions};
use confab_proto::ErrorCode;
use confab_proto::ipc::{AppState, IpcError, IpcErrorCode};
use confab_server::{ServerConfig, ServerHandle};
use serde_json::{Value, json};
use tauri::ipc::{CallbackFn, InvokeBody};
use tauri::test::{INVOKE_KEY, MockRuntime, get_ipc_response, mock_builder};
use tauri::webview::InvokeRequest;
use tauri::{Listener, WebviewWindow, WebviewWindowBuilder};

/// Tauri takes one async runtime per process: every test shares this one.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
        tauri::async_runtime::set(rt.handle().clone());
        rt
    })
}

/// A server, an `App` on it (no audio devices), and the shell's IPC on the mock runtime with
/// the app's real configuration and capabilities, in a window labelled `main`.
struct Shell {
    window: WebviewWindow<MockRuntime>,
    app: tauri::App<MockRuntime>,
    confab: App,
    server: Option<ServerHandle>,
    _dir: tempfile::TempDir,
}

impl Shell {
    fn start() -> Shell {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let config = ServerConfig::new(dir.path().join("server"))
            .with_listen("127.0.0.1:0".parse().unwrap());
        let server = rt.block_on(confab_server::start(config)).unwrap();
        let (confab, events) = rt
            .block_on(App::start(AppOptions {
                profile: "test".into(),
                store_path: dir.path().join("confab.sqlite3"),
                server_url: server.url(),
                embedded_server: true,
                audio: false,
            }))
            .unwrap();
        let ipc = ipc::<MockRuntime>();
        let app = mock_builder()
            .invoke_handler(ipc.invoke_handler())
            .manage(confab.clone())
            .build(context())
            .unwrap();
        ipc.mount_events(&app);
        rt.spawn(forward_events(app.handle().clone(), events));
        let window = WebviewWindowBuilder::new(&app, "main", Default::default())
            .build()
            .unwrap();
        Shell {
            window,
            app,
            confab,
            server: Some(server),
            _dir: dir,
        }
    }

    fn invoke(&self, cmd: &str, args: Value) -> Result<Value, Value> {
        invoke_in(&self.window, cmd, args)
    }

    fn server_url(&self) -> String {
        self.server.as_ref().map(|s| s.url()).unwrap_or_default()
    }

    fn state(&self) -> AppState {
        serde_json::from_value(self.invoke("get_state", json!({})).unwrap()).unwrap()
    }

    fn wait_connected(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.state().connected {
            assert!(Instant::now() < deadline, "never connected to the server");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let rt = runtime();
        rt.block_on(self.confab.shutdown());
        if let Some(server) = self.server.take() {
            rt.block_on(server.shutdown());
        }
    }
}

/// Invokes `cmd` as the app's page (tauri://localhost) in `window` would.
fn invoke_in(window: &WebviewWindow<MockRuntime>, cmd: &str, args: Value) -> Result<Value, Value> {
    let request = InvokeRequest {
        cmd: cmd.into(),
        callback: CallbackFn(0),
        error: CallbackFn(1),
        url: "tauri://localhost".parse().unwrap(),
        body: InvokeBody::Json(args),
        headers: Default::default(),
        invoke_key: INVOKE_KEY.to_string(),
    };
    get_ipc_response(window, request).map(|body| body.deserialize::<Value>().unwrap())
}

fn ipc_error(v: Value) -> IpcError {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("not an IpcError ({e}): {v}"))
}

#[test]
fn get_state_describes_the_app_and_a_bad_join_is_refused_with_a_stable_code() {
    let shell = Shell::start();
    let state = shell.state();
    assert_eq!(state.profile, "test");
    assert_eq!(state.server_url, shell.server_url());
    assert!(state.embedded_server);
    assert_eq!(state.current, None);

    // Not an id at all: refused before anything is sent, as `invalidInput`.
    let err = ipc_error(
        shell
            .invoke("join_space", json!({ "id": "../../etc" }))
            .unwrap_err(),
    );
    assert_eq!(err.code, IpcErrorCode::InvalidInput);
    // The wire shape the UI matches on.
    let raw = shell.invoke("join_space", json!({ "id": "" })).unwrap_err();
    assert_eq!(raw["code"], json!({ "kind": "invalidInput" }));

    // A well-formed id of no space: the server's own code comes through.
    shell.wait_connected();
    let err = ipc_error(
        shell
            .invoke("join_space", json!({ "id": "abcdefghijkl" }))
            .unwrap_err(),
    );
    assert_eq!(err.code, IpcErrorCode::Server(ErrorCode::NoSuchSpace));
    assert_eq!(
        shell.state().current,
        None,
        "a refused join left us somewhere"
    );
}

#[test]
fn following_a_host_reaches_the_webview_as_an_app_event() {
    let shell = Shell::start();
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    shell.app.listen("app-event", move |event| {
        let _ = tx.send(serde_json::from_str(event.payload()).unwrap());
    });
    shell.invoke("follow", json!({ "host": "ada" })).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = rx.recv_timeout(left).expect("no `followed` event with ada");
        if event["type"] == "followed" && event["followed"][0]["host"] == "ada" {
            break;
        }
    }
    let state = shell.state();
    assert_eq!(state.followed.len(), 1);
    assert_eq!(state.followed[0].host, "ada");
}

#[test]
fn every_command_in_the_bindings_is_allowed_for_the_main_window() {
    let shell = Shell::start();
    let bindings = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(BINDINGS_PATH),
    )
    .unwrap();
    let commands: Vec<&str> = bindings
        .split("TAURI_INVOKE(\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert!(commands.len() >= 14, "found only {commands:?}");
    for cmd in commands {
        // Arguments are missing on purpose: the command may fail, but not for want of permission.
        if let Err(e) = shell.invoke(cmd, json!({})) {
            let text = e.to_string();
            assert!(!text.contains("not allowed"), "{cmd}: {text}");
        }
    }
    // The grant is the main window's alone: another window may call nothing.
    let other = WebviewWindowBuilder::new(&shell.app, "other", Default::default())
        .build()
        .unwrap();
    let err = invoke_in(&other, "get_state", json!({})).unwrap_err();
    assert!(err.to_string().contains("not allowed"), "{err}");
}
