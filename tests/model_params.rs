//! Parameter counts of every archi equal DeepFaceLab's (`docs/dfl-parity.md`, "SAEHD networks": A=256, E=64,
//! D=64, M=22), counted on the real built networks.

use dfl::model::arch::ModelConfig;
use dfl::model::saehd::Saehd;
use dfl::model::summary::summarize;
use tch::{Device, nn};

/// (archi, params at R=96, R=128, R=256), as DFL's layer tables give them.
const DFL_COUNTS: [(&str, [i64; 3]); 14] = [
    ("df", [52_026_240, 57_538_432, 95_336_320]),
    ("df-u", [52_026_240, 57_538_432, 95_336_320]),
    ("df-d", [50_340_438, 54_470_998, 82_794_838]),
    ("df-ud", [50_340_438, 54_470_998, 82_794_838]),
    ("df-t", [88_023_936, 90_783_616, 109_707_136]),
    ("df-dt", [86_338_134, 87_716_182, 97_165_654]),
    ("df-udt", [86_338_134, 87_716_182, 97_165_654]),
    ("liae", [80_254_592, 94_963_328, 195_823_232]),
    ("liae-u", [80_254_592, 94_963_328, 195_823_232]),
    ("liae-d", [73_194_347, 82_376_555, 145_340_267]),
    ("liae-ud", [73_194_347, 82_376_555, 145_340_267]),
    ("liae-t", [80_920_512, 90_124_224, 153_235_392]),
    ("liae-dt", [73_860_267, 77_537_451, 102_752_427]),
    ("liae-udt", [73_860_267, 77_537_451, 102_752_427]),
];

fn count(arch: &str, resolution: i64) -> i64 {
    let cfg = ModelConfig { arch: arch.parse().unwrap(), resolution, ..Default::default() };
    let vs = nn::VarStore::new(Device::Cpu);
    let _model = Saehd::new(&vs.root(), &cfg);
    summarize(&vs, &cfg).total
}

#[test]
fn every_archi_has_dfls_parameter_count_at_96_128_and_256() {
    let mut wrong = Vec::new();
    for (arch, counts) in DFL_COUNTS {
        for (resolution, want) in [96, 128, 256].into_iter().zip(counts) {
            let got = count(arch, resolution);
            if got != want {
                wrong.push(format!("{arch}@{resolution}: {got} ≠ DFL's {want}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn per_part_counts_match_the_layer_tables() {
    let cfg = ModelConfig { arch: "df".parse().unwrap(), ..Default::default() };
    let vs = nn::VarStore::new(Device::Cpu);
    let _model = Saehd::new(&vs.root(), &cfg);
    let summary = summarize(&vs, &cfg);
    let parts: Vec<(&str, i64)> = summary.parts.iter().map(|(n, p)| (n.as_str(), *p)).collect();
    assert_eq!(
        parts,
        [
            ("encoder", 4_306_560),
            ("inter", 14_959_872),
            ("decoder_src", 19_136_000),
            ("decoder_dst", 19_136_000)
        ]
    );
    let row = |name: &str| summary.layers.iter().find(|l| l.name == name).map(|l| l.params);
    assert_eq!(row("inter.dense1"), Some(8_388_864));
    assert_eq!(row("decoder_src.upscalem.0.conv"), Some(1_622_720));
    assert_eq!(
        row("decoder_src.res.0.conv1").zip(row("decoder_src.res.0.conv2")).map(|(a, b)| a + b),
        Some(4_719_616)
    );
}
