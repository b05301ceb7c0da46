"""Packing: each unit of a parcel scanned in at the packing station (a wrong SKU or an extra
unit refused and counted, the parcel sealed only when complete, the tally that
`PackingVerified` carries), and cartonisation (which standard box, what packaging material,
how many parcels, what each weighs)."""
