//! The machinery that turns the option table in `options.rs` into code.
//!
//! `define_options!` reads one entry per option (key, type, help, default, environment names,
//! flag) and writes everything that has to go over every option, so no list of options is
//! written twice:
//!
//! - `Layer`: one layer of settings (all fields optional), read from the TOML file by serde
//!   (unknown keys refused), merged with `over`; its `Debug` hides secrets;
//! - `Layer::from_env`: the environment reader (first non-empty name of an option wins);
//! - `Layer::flag_args` / `Layer::from_flags`: the clap flags of `mount` and `check`, their
//!   help text (with the default and the environment names), and the layer they give;
//! - `Layer::set_mount_option`: one `-o key=value` of `mount -t bucketfs`;
//! - `Settings`: a merged layer with the table's defaults applied, what `resolve` validates;
//! - `KEYS` and `ENV_VARS`, and `Layer::differs_from_defaults` for the checks of
//!   `config.example.toml`.
//!
//! The entry syntax is described in `options.rs`.

/// See the module comment. Internal rules start with `@`.
macro_rules! define_options {
    // ---- A default: the type in `Settings`, its value, its text in --help ------------------
    (@settings_type $ty:ty, value) => { $ty };
    (@settings_type $ty:ty, computed) => { $ty };
    (@settings_type $ty:ty, none) => { Option<$ty> };

    (@settings_value $v:expr, value($default:expr)) => { $v.unwrap_or_else(|| $default) };
    (@settings_value $v:expr, computed($text:literal, $default:expr)) => {
        $v.unwrap_or_else(|| $default)
    };
    (@settings_value $v:expr, none $(($text:literal))?) => { $v };

    (@default_text $ty:ty, value($default:expr)) => {
        Some(<$ty as $crate::config::values::OptionValue>::show(&$default))
    };
    (@default_text $ty:ty, computed($text:literal, $default:expr)) => { Some($text.to_string()) };
    (@default_text $ty:ty, none) => { None::<String> };
    (@default_text $ty:ty, none($text:literal)) => { Some($text.to_string()) };

    (@differs $v:expr, $key:ident, $out:ident, value($default:expr)) => {
        if $v.as_ref().is_some_and(|v| *v != $default) {
            $out.push(stringify!($key));
        }
    };
    (@differs $v:expr, $key:ident, $out:ident, $other:ident $(($($arg:tt)*))?) => {};

    // ---- Environment names --------------------------------------------------------------
    (@env_vars none) => { &[] };
    (@env_vars [$($var:literal),+ $(,)?]) => { &[$($var),+] };

    (@read_env $layer:ident . $key:ident : $ty:ty, $get:ident, none) => {};
    (@read_env $layer:ident . $key:ident : $ty:ty, $get:ident, [$($var:literal),+ $(,)?]) => {
        if let Some((var, text)) = $crate::config::env::first_set(&$get, &[$($var),+]) {
            let value = <$ty as $crate::config::values::OptionValue>::from_env(&text).map_err(
                |e| $crate::config::ConfigError::InEnv {
                    var: var.to_string(),
                    error: Box::new(e),
                },
            )?;
            $layer.$key = Some(value);
        }
    };

    // ---- Mount options (`-o key=value` of mount(8)) ----------------------------------------
    (@mount_option $field:expr, $ty:ty, $key:ident, $text:ident, [secret], $env:tt) => {
        Err($crate::config::ConfigError::MountOptionRefused {
            option: stringify!($key),
            fix: "mount options show in ps and /etc/fstab is readable by everyone: put it in \
                  the config file (config=FILE, mode 0600) or the environment",
        })
    };
    (@mount_option $field:expr, $ty:ty, $key:ident, $text:ident, [], none) => {
        Err($crate::config::ConfigError::MountOptionRefused {
            option: stringify!($key),
            fix: "it is set in the config file only: use config=FILE",
        })
    };
    (@mount_option $field:expr, $ty:ty, $key:ident, $text:ident, [],
        [$($var:literal),+ $(,)?]) => {(|| {
        let text = $text
            .or(<$ty as $crate::config::values::OptionValue>::WITHOUT_VALUE)
            .ok_or($crate::config::ConfigError::MountOptionNeedsValue {
                option: stringify!($key),
            })?;
        let value = <$ty as $crate::config::values::OptionValue>::from_env(text).map_err(|e| {
            $crate::config::ConfigError::InMountOption {
                option: format!("{}={text}", stringify!($key)),
                error: Box::new(e),
            }
        })?;
        $field = Some(value);
        Ok(())
    })()};

    // ---- Flags ----------------------------------------------------------------------------
    (@flag_arg $key:ident : $ty:ty, $help:literal, $default:expr, $env:tt, none) => {
        None::<($crate::config::flags::FlagScope, clap::Arg)>
    };
    (@flag_arg $key:ident : $ty:ty, $help:literal, $default:expr, $env:tt,
        switch($scope:ident, $long:literal => $set:literal)) => {
        Some((
            $crate::config::flags::FlagScope::$scope,
            clap::Arg::new(stringify!($key))
                .long($crate::config::flags::long($long))
                .action(clap::ArgAction::SetTrue)
                .help($crate::config::flags::help_text(
                    $help,
                    None,
                    define_options!(@env_vars $env),
                )),
        ))
    };
    (@flag_arg $key:ident : $ty:ty, $help:literal, $default:expr, $env:tt,
        value($scope:ident, $long:literal, $value_name:literal)) => {
        Some((
            $crate::config::flags::FlagScope::$scope,
            clap::Arg::new(stringify!($key))
                .long($crate::config::flags::long($long))
                .value_name($value_name)
                .value_parser(<$ty as $crate::config::values::OptionValue>::value_parser())
                .help($crate::config::flags::help_text(
                    $help,
                    $default,
                    define_options!(@env_vars $env),
                )),
        ))
    };

    (@from_flags $layer:ident . $key:ident : $ty:ty, $m:ident, $of:ident, none) => {};
    (@from_flags $layer:ident . $key:ident : $ty:ty, $m:ident, $of:ident,
        switch($scope:ident, $long:literal => $set:literal)) => {
        if $of.takes($crate::config::flags::FlagScope::$scope) && $m.get_flag(stringify!($key)) {
            $layer.$key = Some($set);
        }
    };
    (@from_flags $layer:ident . $key:ident : $ty:ty, $m:ident, $of:ident,
        value($scope:ident, $long:literal, $value_name:literal)) => {
        if $of.takes($crate::config::flags::FlagScope::$scope) {
            $layer.$key = $m.get_one::<$ty>(stringify!($key)).cloned();
        }
    };

    // ---- Debug: secrets are shown as set or not, never their value -----------------------
    (@debug_value $v:expr, [secret]) => { &$v.as_ref().map(|_| "<redacted>") };
    (@debug_value $v:expr, []) => { &$v };

    // ---- The table --------------------------------------------------------------------------
    ($(
        $(#[$marker:ident])?
        $key:ident : $ty:ty {
            help: $help:literal,
            default: $dkind:ident $(($($darg:tt)*))?,
            env: $env:tt,
            flag: $fkind:ident $(($($farg:tt)*))?,
        }
    )*) => {
        /// One layer of settings (the file, the environment or the flags); `None` means "not
        /// set here". Each field is one option of the table in `config/options.rs`.
        #[derive(Default, Clone, PartialEq, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Layer {
            $(
                #[doc = $help]
                pub $key: Option<$ty>,
            )*
        }

        /// Every option's key, in table order.
        pub const KEYS: &[&str] = &[$(stringify!($key)),*];

        /// Every option's environment names, first wins (none: the option is file-only).
        pub const ENV_VARS: &[(&str, &[&str])] = &[
            $((stringify!($key), define_options!(@env_vars $env))),*
        ];

        impl Layer {
            /// Fields set in `self` win over those in `lower`.
            pub fn over(self, lower: Layer) -> Layer {
                Layer { $($key: self.$key.or(lower.$key)),* }
            }

            /// Names of the keys this layer leaves unset.
            pub fn unset_fields(&self) -> Vec<&'static str> {
                [$((stringify!($key), self.$key.is_none())),*]
                    .into_iter()
                    .filter(|(_, unset)| *unset)
                    .map(|(name, _)| name)
                    .collect()
            }

            /// Keys set here to something other than the table's fixed default (options whose
            /// default is computed or absent are never listed).
            pub fn differs_from_defaults(&self) -> Vec<&'static str> {
                let mut differ = Vec::new();
                $(define_options!(@differs self.$key, $key, differ, $dkind $(($($darg)*))?);)*
                differ
            }

            /// Reads the environment: for each option the first of its names that is set and
            /// not empty.
            pub fn from_env(
                get: impl Fn(&str) -> Option<String>,
            ) -> Result<Layer, $crate::config::ConfigError> {
                let mut layer = Layer::default();
                $(define_options!(@read_env layer.$key: $ty, get, $env);)*
                Ok(layer)
            }

            /// Sets the option `key` from a mount option: `-o key=text`, or `-o key` (`text`
            /// `None`, only for booleans: true), read as the option's environment text is.
            /// Secrets and file-only options (`rules`) are refused; `None` if no option has
            /// that key.
            pub(crate) fn set_mount_option(
                &mut self,
                key: &str,
                text: Option<&str>,
            ) -> Option<Result<(), $crate::config::ConfigError>> {
                $(
                    if key == stringify!($key) {
                        return Some(define_options!(
                            @mount_option self.$key, $ty, $key, text, [$($marker)?], $env
                        ));
                    }
                )*
                None
            }

            /// The flags of the options a command takes, in table order.
            pub(crate) fn flag_args(of: $crate::config::flags::FlagsOf) -> Vec<clap::Arg> {
                let mut args = Vec::new();
                $(
                    let arg = define_options!(
                        @flag_arg $key: $ty,
                        $help,
                        define_options!(@default_text $ty, $dkind $(($($darg)*))?),
                        $env,
                        $fkind $(($($farg)*))?
                    );
                    if let Some((scope, arg)) = arg {
                        if of.takes(scope) {
                            args.push(arg);
                        }
                    }
                )*
                args
            }

            /// The layer the flags of `flag_args(of)` give.
            pub(crate) fn from_flags(
                m: &clap::ArgMatches,
                of: $crate::config::flags::FlagsOf,
            ) -> Layer {
                let mut layer = Layer::default();
                $(define_options!(@from_flags layer.$key: $ty, m, of, $fkind $(($($farg)*))?);)*
                layer
            }
        }

        impl std::fmt::Debug for Layer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("Layer")
                    $(.field(
                        stringify!($key),
                        define_options!(@debug_value self.$key, [$($marker)?]),
                    ))*
                    .finish()
            }
        }

        /// Every option after merging, with the table's default where no layer set it
        /// (`Option` only for options without a default). Not yet validated.
        #[derive(Debug, Clone)]
        pub struct Settings {
            $(
                #[doc = $help]
                pub $key: define_options!(@settings_type $ty, $dkind),
            )*
        }

        impl From<Layer> for Settings {
            fn from(layer: Layer) -> Settings {
                Settings {
                    $($key: define_options!(@settings_value layer.$key, $dkind $(($($darg)*))?),)*
                }
            }
        }
    };
}

pub(super) use define_options;
