fn main() {
    println!("ember: under construction");
}
