fn main() {
    for s in std::env::args().skip(1) {
        match mole_featurize::parse_smiles(&s) {
            Err(e) => println!("{s}: {e}"),
            Ok(m) => {
                println!("{s}");
                for (i, a) in m.atoms().iter().enumerate() {
                    println!(
                        "  atom {i} {} arom {} hs {} ring {} deg {}",
                        a.symbol(),
                        a.is_aromatic(),
                        a.total_num_hs(),
                        a.in_ring(),
                        a.degree()
                    );
                }
                for b in m.bonds() {
                    println!("  bond {}-{} {:?}", b.begin(), b.end(), b.bond_type());
                }
            }
        }
    }
}
