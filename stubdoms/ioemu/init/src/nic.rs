//! Network plumbing: QEMU's emulated NICs reach the guest's PV vifs through a bridge.
//!
//! libxl gives the stub domain one PV vif per guest NIC (`ethN` here, whose xenbus name
//! is `vif-<devid>`) and asks QEMU for a tap per NIC (`-netdev type=tap,...,
//! ifname=vif<domid>.<devid>-emu,script=no`). QEMU creates the tap but runs no script,
//! so the init bridges each tap with the vif of the same `devid` (`br<devid>`), and gives
//! both ports a MAC address of their own: the vif carries the guest's MAC, and a bridge
//! port with the guest's address would make the bridge swallow the guest's traffic as its
//! own.

/// One tap QEMU creates, and the vif it belongs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tap {
    /// The tap's interface name.
    pub ifname: String,
    /// The NIC's device id, shared by the vif.
    pub devid: u32,
}

impl Tap {
    /// The bridge joining this tap and its vif.
    pub fn bridge(&self) -> String {
        format!("br{}", self.devid)
    }
}

/// Locally administered MACs for the bridge ports (never the guest's).
pub const VIF_PORT_MAC: [u8; 6] = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xfe];
/// See [`VIF_PORT_MAC`].
pub const TAP_PORT_MAC: [u8; 6] = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xfd];

/// The taps named by `-netdev` options in QEMU's arguments.
pub fn taps(args: &[String]) -> Vec<Tap> {
    let mut out = Vec::new();
    for pair in args.windows(2) {
        if pair[0] != "-netdev" {
            continue;
        }
        let opts = split_opts(&pair[1]);
        let get = |key: &str| opts.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        let is_tap = get("type") == Some("tap")
            || opts
                .first()
                .is_some_and(|(k, v)| k == "tap" && v.is_empty());
        let Some(ifname) = get("ifname").filter(|_| is_tap) else {
            continue;
        };
        let devid = devid_from_ifname(ifname).or_else(|| get("id").and_then(devid_from_netdev_id));
        if let Some(devid) = devid {
            out.push(Tap {
                ifname: ifname.to_owned(),
                devid,
            });
        }
    }
    out
}

/// Splits QEMU's `key=value,key=value` syntax, where `,,` stands for a literal comma.
pub fn split_opts(text: &str) -> Vec<(String, String)> {
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                cur.push(',');
            } else {
                items.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    items.push(cur);
    items
        .into_iter()
        .map(|item| match item.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (item, String::new()),
        })
        .collect()
}

/// `vif<domid>.<devid>-emu` (libxl's name for an emulated NIC's tap) to `devid`.
pub fn devid_from_ifname(ifname: &str) -> Option<u32> {
    let rest = ifname.strip_prefix("vif")?.strip_suffix("-emu")?;
    let (domid, devid) = rest.split_once('.')?;
    domid.parse::<u32>().ok()?;
    devid.parse().ok()
}

fn devid_from_netdev_id(id: &str) -> Option<u32> {
    id.strip_prefix("net")?.parse().ok()
}

/// `vif-<devid>` (the xenbus device name behind `/sys/class/net/ethN/device`) to `devid`.
pub fn devid_from_xenbus_name(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("vif-")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn finds_libxl_taps() {
        let a = args(&[
            "-device",
            "rtl8139,id=nic0,netdev=net0,mac=00:16:3e:00:00:01",
            "-netdev",
            "type=tap,id=net0,ifname=vif2.0-emu,br=xenbr0,script=no,downscript=no",
            "-netdev",
            "type=tap,id=net3,ifname=vif2.3-emu,br=xenbr0,script=no,downscript=no",
            "-netdev",
            "user,id=u1",
        ]);
        let taps = taps(&a);
        assert_eq!(
            taps,
            [
                Tap {
                    ifname: "vif2.0-emu".into(),
                    devid: 0
                },
                Tap {
                    ifname: "vif2.3-emu".into(),
                    devid: 3
                }
            ]
        );
        assert_eq!(taps[1].bridge(), "br3");
    }

    #[test]
    fn falls_back_to_the_netdev_id() {
        let a = args(&["-netdev", "tap,id=net1,ifname=guesttap"]);
        assert_eq!(
            taps(&a),
            [Tap {
                ifname: "guesttap".into(),
                devid: 1
            }]
        );
    }

    #[test]
    fn ignores_taps_without_ifname_or_devid() {
        let a = args(&[
            "-netdev",
            "type=tap,id=net0",
            "-netdev",
            "type=tap,id=x,ifname=foo",
            "-netdev",
        ]);
        assert!(taps(&a).is_empty());
    }

    #[test]
    fn splits_options_with_escaped_commas() {
        assert_eq!(
            split_opts("type=tap,ifname=a,,b,flag"),
            [
                ("type".to_string(), "tap".to_string()),
                ("ifname".to_string(), "a,b".to_string()),
                ("flag".to_string(), String::new())
            ]
        );
    }

    #[test]
    fn parses_names() {
        for (name, want) in [
            ("vif12.0-emu", Some(0)),
            ("vif1.10-emu", Some(10)),
            ("vif1.0", None),
            ("vifx.0-emu", None),
            ("tap0", None),
        ] {
            assert_eq!(devid_from_ifname(name), want, "{name}");
        }
        for (name, want) in [
            ("vif-0", Some(0)),
            ("vif-12", Some(12)),
            ("vif-", None),
            ("vbd-1", None),
            ("vif-1a", None),
        ] {
            assert_eq!(devid_from_xenbus_name(name), want, "{name}");
        }
    }
}
